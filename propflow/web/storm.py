"""Storm checks from the web door (models/storm.py): the sheets page's button posts here;
the vacant-unit rounds are ordered as `propflow inspections storm` orders them, audited as
the signed-in member of staff (only the community's customer-service management may)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from core.errors import PropflowError
from models.outbox import audit_extra
from propflow.web import auth, pages
from propflow.web.problems import status_of
from propflow.web.templating import render

router = APIRouter(include_in_schema=False)


@router.post("/inspections/storm", response_class=HTMLResponse,
             dependencies=[Depends(auth.csrf_check)])
async def order(request: Request, principal: pages.Page) -> Response:
    from tasks.storm import order_storm_checks

    staff_id = pages.whole_session(principal)
    posted = dict((await request.form()).items())
    community, when = str(posted.get("community", "")), str(posted.get("when", "before"))

    def run() -> dict:  # type: ignore[type-arg]
        with audit_extra(channel="web"):
            return order_storm_checks(community, when, staff_id)

    try:
        done = await run_in_threadpool(run)
    except PropflowError as exc:
        return render(request, "checkin/storm.html", {
            "principal": principal, "error": {"field": exc.field, "message": exc.message}},
            status=status_of(exc))
    return render(request, "checkin/storm.html", {"principal": principal, "done": done})
