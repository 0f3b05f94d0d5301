"""The operations dashboard (/dashboard): per community the viewer sees, open cases by
procedure and status, overdue steps, today's escalations, stuck runs and failed deliveries,
each linking to its case page and its run in the Prefect UI."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, or_, select
from starlette.concurrency import run_in_threadpool

from core.clock import now
from core.policy import get_policy
from core.vocabulary import CaseStatus
from models import directory, notices, scope
from models.cases import Case, Escalation, Step
from models.db import unit_of_work
from models.org import Community
from models.outbox import Notification
from propflow import actions
from propflow.web import auth
from propflow.web.auth import Principal
from propflow.web.pages import ACTIONS, STATUSES, whole_session
from propflow.web.templating import render

router = APIRouter(include_in_schema=False)
LIST_MAX = 50  # rows per list and community: the page is a glance, the CLI has the rest


def _today_start(at: datetime) -> datetime:
    tz = ZoneInfo(get_policy().timezone)
    return datetime.combine(at.astimezone(tz).date(), time(0), tzinfo=tz)


def _case_link(number: str, run_id: str | None) -> dict[str, Any]:
    return {"case": number, "prefect_url": actions.prefect_run_url(run_id)}


def summary(viewer: int) -> list[dict[str, Any]]:
    at = now()
    with unit_of_work(write=False) as session:
        person = directory.staff(session, viewer, field="as")
        ids = scope.community_ids(session, person)
        communities = list(session.scalars(select(Community).where(Community.id.in_(ids))
                                           .order_by(Community.code)))
        out = []
        for community in communities:
            in_it = Case.community_id == community.id
            open_counts = session.execute(
                select(Case.procedure, Case.status, func.count()).where(
                    in_it, Case.status != CaseStatus.CLOSED)
                .group_by(Case.procedure, Case.status).order_by(Case.procedure, Case.status))
            overdue = session.execute(
                select(Step, Case.number, Case.flow_run_id, Case.procedure).join(Case)
                .where(in_it, actions.overdue_steps())
                .order_by(Step.due_at).limit(LIST_MAX)).all()
            escalated = session.execute(
                select(Escalation, Step.kind, Case.number, Case.flow_run_id, Case.procedure)
                .join(Step, Step.id == Escalation.step_id).join(Case, Case.id == Step.case_id)
                .where(in_it, Escalation.lapsed_at >= _today_start(at),
                       Escalation.lapsed_at <= at)
                .order_by(Escalation.lapsed_at.desc()).limit(LIST_MAX)).all()
            stuck = session.scalars(
                select(Case).where(in_it, or_(
                    Case.status == CaseStatus.STUCK,
                    (Case.status != CaseStatus.CLOSED)
                    & Case.run_state.in_(("Failed", "Crashed", "Cancelled"))))
                .limit(LIST_MAX))
            failed = session.execute(
                select(Notification, Case.number, Case.flow_run_id).join(
                    Case, Case.id == Notification.case_id)
                .where(in_it, Notification.status == "failed")
                .order_by(Notification.id.desc()).limit(LIST_MAX)).all()
            out.append({
                "code": community.code, "name": community.name,
                "open": [{"procedure": p, "status": str(s), "count": n}
                         for p, s, n in open_counts],
                "overdue": [{**_case_link(number, run), "procedure": procedure,
                             "step": s.kind, "step_id": s.id, "role": actions.role_now(s),
                             "due_at": notices.local(s.due_at), "level": s.level}
                            for s, number, run, procedure in overdue],
                "escalations": [{**_case_link(number, run), "procedure": procedure,
                                 "step": kind, "level": e.level, "to_role": e.to_role,
                                 "at": notices.local(e.lapsed_at)}
                                for e, kind, number, run, procedure in escalated],
                "stuck": [{**_case_link(c.number, c.flow_run_id), "procedure": c.procedure,
                           "status": str(c.status), "run_state": c.run_state,
                           "restarts": c.run_restarts or 0} for c in stuck],
                "failed": [{**_case_link(number, run), "event": n.event,
                            "to": n.recipient_name, "channel": n.channel,
                            "attempts": n.attempts, "at": notices.local(n.created_at)}
                           for n, number, run in failed],
            })
        return out


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(request: Request,
                    principal: Annotated[Principal, Depends(auth.page_principal)]) -> Response:
    staff_id = whole_session(principal)
    communities = await run_in_threadpool(summary, staff_id)
    return render(request, "dashboard.html", {
        "principal": principal, "communities": communities, "statuses": STATUSES,
        "actions": ACTIONS, "now_text": notices.local(now())})
