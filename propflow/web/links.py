"""One-tap links from staff messages: GET /l/{token} uses the link (once), signs its staff
member in for that step alone (auth.start_session with step_id) and opens the step's page.

An expired or used link changes nothing: a page (410) says so and how to sign in instead.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from core.errors import NotFound
from propflow import actions
from propflow.web import auth, templating

router = APIRouter(include_in_schema=False)
# A link session lasts as long as it takes to decide one step, not a working day.
LINK_SESSION_SECONDS = 2 * 3600


@router.get("/l/{token}")
async def open_link(request: Request, token: str) -> Response:
    from models.links import LinkGone

    try:
        opened = await run_in_threadpool(actions.open_staff_link, token)
    except LinkGone as exc:
        if exc.reason == "used" and _holds(request, exc.staff_id, exc.step_id):
            # A second tap by whoever the first one signed in: the same page, nothing new.
            return RedirectResponse(f"/steps/{exc.step_id}", status_code=303)
        return templating.render(request, "links/gone.html",
                                 {"reason": exc.reason, "owner": False}, status=410)
    except NotFound:
        return templating.render(request, "links/gone.html",
                                 {"reason": "unknown", "owner": False}, status=404)
    response = RedirectResponse(f"/steps/{opened['step_id']}", status_code=303)
    auth.start_session(response, opened["staff_id"], step_id=opened["step_id"],
                       max_age=LINK_SESSION_SECONDS, secure=request.url.scheme == "https")
    return response


def _holds(request: Request, staff_id: int | None, step_id: int | None) -> bool:
    """Whether this browser is already signed in as the link's staff member, for its step."""
    session = auth.session_of(request)
    return (session is not None and staff_id is not None and session.get("s") == staff_id
            and session.get("st") in (None, step_id))
