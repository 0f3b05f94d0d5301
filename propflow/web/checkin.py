"""Inspection rounds in the web door: the checkpoint's QR link (GET /checkin/...) checks the
signed-in member of staff in and opens that checkpoint's step of the current round to fill
in; the sheets of codes to print (GET /inspections/sheets, /inspections/sheet).

The link is checked before anything else: a tampered or unknown one gets a page saying so
(nothing recorded, no sign-in asked). A good one without a session goes to sign-in and back,
as every page does (auth.page_principal).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from core.errors import NotFound, PropflowError
from propflow import checkpoints
from propflow.checkpoints import Checkpoint
from propflow.web import auth, pages
from propflow.web.problems import status_of
from propflow.web.templating import render

router = APIRouter(include_in_schema=False)
MEDIA = {"pdf": "application/pdf", "png": "image/png"}
# A NotFound on these fields: the link is genuine but the policy no longer has its place.
PLACE_FIELDS = ("community", "plan", "checkpoint")


def _refused(request: Request, reason: str, status: int, message: str = "",
             principal: auth.Principal | None = None) -> Response:
    return render(request, "checkin/refused.html", {"reason": reason, "message": message,
                                                    "principal": principal}, status=status)


def _to_sign_in(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


@router.get("/checkin/{community}/{plan}/{checkpoint}/{sig}")
async def scan(request: Request, community: str, plan: str, checkpoint: str,
               sig: str) -> Response:
    point = Checkpoint(community, plan, checkpoint)
    if not checkpoints.genuine(point, sig):
        return _refused(request, "invalid", 404)
    principal = await auth.session_principal(request)
    # A one-tap link's session opens its own step alone: a check-in needs a full sign-in.
    if principal is None or principal.staff_id is None or principal.limited:
        return _to_sign_in(request)
    staff_id = principal.staff_id
    try:
        done = await run_in_threadpool(checkpoints.check_in, staff_id, point)
    except PropflowError as exc:
        unknown = isinstance(exc, NotFound) and exc.field in PLACE_FIELDS
        return _refused(request, "unknown" if unknown else exc.code, status_of(exc),
                        exc.message.split("；")[0], principal)
    step = await run_in_threadpool(pages._step, done["step_id"], staff_id)
    return render(request, "checkin/step.html", {
        "principal": principal, "step": step, "checkin": done, "result": {}, "error": None,
        "posted": {}, **pages._clock()})


@router.get("/checkin/{rest:path}")
async def scan_broken(request: Request, rest: str) -> Response:
    """A checkpoint's link cut short or run on: the same page as a tampered one."""
    return _refused(request, "invalid", 404)


def _sheet_rows(staff_id: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Each plan of each community of theirs, and the communities where they may order
    storm checks (models/storm.py): a steward is not offered a button that refuses them."""
    from sqlalchemy import select

    from models import directory, scope, storm
    from models.db import unit_of_work
    from models.org import Community

    with unit_of_work(write=False) as session:
        person = directory.staff(session, staff_id)
        ids = scope.community_ids(session, person)
        places = session.execute(select(Community.id, Community.code, Community.name)
                                 .where(Community.id.in_(ids)).order_by(Community.code)).all()
        storms = [code for id_, code, _ in places
                  if directory.roles_of(person, id_) & set(storm.ORDERED_BY)]
    found = checkpoints.plans()
    return [{"community": code, "community_name": name, "plan": key, "label": plan.label,
             "checkpoints": [p.label for p in plan.checkpoints.values()]}
            for _, code, name in places for key, plan in found.items()], storms


@router.get("/inspections/sheets")
async def sheets_page(request: Request, principal: pages.Page) -> Response:
    """Each plan of each community of theirs, with its sheet to download."""
    rows, storms = await run_in_threadpool(_sheet_rows, pages.whole_session(principal))
    return render(request, "checkin/sheets.html", {"principal": principal, "rows": rows,
                                                   "storms": storms})


@router.get("/inspections/sheet")
async def sheet(request: Request, principal: pages.Page, community: str = "", plan: str = "",
                format: str = "pdf") -> Response:
    staff_id = pages.whole_session(principal)
    try:
        drawn = await run_in_threadpool(lambda: checkpoints.sheet(
            community, plan, format, viewer=staff_id))
    except PropflowError as exc:
        return _refused(request, "sheet", status_of(exc), exc.message, principal)
    name = f"checkpoints-{community}-{plan}.{format}"
    return Response(drawn, media_type=MEDIA[format],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
