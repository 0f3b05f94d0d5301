"""The staff inbox (/), the case page and the step page, rendered on the server.

Every read and every decision goes through propflow.actions with the signed-in member of
staff as the viewer, so what a page shows and accepts is what the CLI and the API would.
A one-tap link's session sees its own step's page and nothing else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from core.clock import now
from core.errors import PropflowError
from core.policy import get_policy
from models.authority import STAFF_FIELDS
from models.cases import Case
from models.db import unit_of_work
from models.org import Staff, Unit
from propflow import actions
from propflow.web import approvals, auth, events, stepform
from propflow.web.auth import Principal
from propflow.web.problems import Problem, status_of
from propflow.web.templating import lang_of, render

router = APIRouter(include_in_schema=False)
Page = Annotated[Principal, Depends(auth.page_principal)]

# How the timeline names what happened (audit_events.action).
ACTIONS: dict[str, tuple[str, str]] = {
    "case_opened": ("登记工单", "case opened"), "step_opened": ("步骤开启", "step opened"),
    "decided": ("已处理", "decided"), "escalated": ("已升级", "escalated"),
    "lapsed": ("已超时", "lapsed"), "warned": ("即将超时提醒", "warned"),
    "case_closed": ("工单关闭", "case closed"), "linked": ("关联工单", "linked"),
    "assigned": ("已派单", "assigned"), "auto_dispatch": ("自动派单", "auto dispatch"),
    "broadcast": ("群发通知", "broadcast"), "step_cancelled": ("步骤取消", "step cancelled"),
    "step_expired": ("步骤过期", "step expired"),
    "escalation_unstaffed": ("升级无人接收", "escalation unstaffed"),
    "assignee_unavailable": ("被指派人不可用", "assignee unavailable"),
    "run_restarted": ("流程重启", "run restarted"), "run_stuck": ("流程卡住", "run stuck"),
    "run_recovered": ("流程恢复", "run recovered"),
    "ui_decision_refused": ("Prefect 界面决定被拒", "Prefect UI decision refused"),
    "claimed": ("认领", "claimed"), "unclaimed": ("退回认领", "unclaimed"),
    "transferred": ("转办", "transferred"), "delegated": ("委派", "delegated"),
    "signer_added": ("加签", "signer added"), "copied": ("抄送", "copied"),
    "sent_back": ("驳回", "sent back"), "withdrawn": ("撤回", "withdrawn"),
    "signed": ("已签署", "signed"), "link_used": ("打开一键链接", "one-tap link used"),
    "link_created": ("生成一键链接", "one-tap link created"),
    "handler_set": ("指定处理人", "handler set"),
    "checked_in": ("巡查签到", "checked in"),
}
STATUSES: dict[str, tuple[str, str]] = {
    "open": ("待处理", "open"), "in_progress": ("处理中", "in progress"),
    "closed": ("已关闭", "closed"), "stuck": ("卡住", "stuck"), "waiting": ("待处理", "waiting"),
    "decided": ("已处理", "decided"), "lapsed": ("已过期", "lapsed"),
    "cancelled": ("已取消", "cancelled"),
}


def staff_of(principal: Principal) -> int:
    """Staff pages are for staff: an owner's link has its own pages (/o)."""
    if principal.staff_id is None:
        raise Problem(403, "仅限员工 (staff only)", "该页面仅限员工；业主请使用短信中的链接",
                      code="forbidden")
    return principal.staff_id


def whole_session(principal: Principal) -> int:
    """Pages a one-tap link does not open: it opens its own step alone."""
    if principal.step_id is not None:
        raise Problem(403, "链接仅限一个步骤 (this link opens one step)",
                      f"一键链接只能打开步骤 {principal.step_id}；请登录查看其他内容",
                      code="link_scope")
    return staff_of(principal)


def _due(text: str) -> str:
    """A step row's local due time as an ISO instant, for the countdown."""
    if not text:
        return ""
    tz = ZoneInfo(get_policy().timezone)
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=tz).isoformat()


def _cases(numbers: list[str]) -> dict[str, dict[str, Any]]:
    """What an inbox row says about its case: procedure, unit, the first words."""
    if not numbers:
        return {}
    with unit_of_work(write=False) as session:
        rows = session.execute(
            select(Case.number, Case.procedure, Case.description, Case.priority, Unit.code)
            .outerjoin(Unit, Unit.id == Case.unit_id).where(Case.number.in_(numbers)))
        return {r.number: {"procedure": r.procedure, "description": r.description,
                           "priority": r.priority, "unit": r.code} for r in rows}


def inbox_rows(staff_id: int) -> list[dict[str, Any]]:
    """My steps: overdue and escalated first, then by due time."""
    rows = actions.steps_as(staff_id, "mine")
    cases = _cases(sorted({r["case"] for r in rows}))
    at = now()
    for row in rows:
        row.update(cases.get(row["case"], {}))
        row["due_iso"] = _due(row["due_at"])
        row["overdue"] = bool(row["breached"]) or (
            bool(row["due_iso"]) and datetime.fromisoformat(row["due_iso"]) <= at)
        row["escalated"] = row["level"] > 0
    rows.sort(key=lambda r: (not (r["overdue"] or r["escalated"]), r["due_iso"], r["id"]))
    return rows


def _clock() -> dict[str, Any]:
    return {"now_iso": now().isoformat(), "actions": ACTIONS, "statuses": STATUSES}


@router.get("/", response_class=HTMLResponse)
async def inbox(request: Request, principal: Page) -> Response:
    if principal.step_id is not None:  # a one-tap link lands on its step
        return RedirectResponse(f"/steps/{principal.step_id}", status_code=303)
    staff_id = staff_of(principal)
    after = await run_in_threadpool(events.last_id)  # first: news while reading is not lost
    rows = await run_in_threadpool(inbox_rows, staff_id)
    return render(request, "inbox.html", {"principal": principal, "rows": rows,
                                          "after": after, **_clock()})


@router.get("/inbox/list", response_class=HTMLResponse)
async def inbox_list(request: Request, principal: Page) -> Response:
    """The list alone: the inbox fetches it again when an event arrives."""
    rows = await run_in_threadpool(inbox_rows, whole_session(principal))
    return render(request, "_inbox_list.html", {"rows": rows, **_clock()})


ACTORS = {"system": ("系统", "system"), "flow": ("流程", "flow"),
          "sla-clock": ("时效时钟", "SLA clock"), "prefect_ui": ("Prefect 界面", "Prefect UI"),
          "owner": ("业主", "owner"), "front_desk": ("前台", "front desk")}


def _names(case: dict[str, Any], lang: str) -> dict[str, str]:
    """Who the timeline's actors and deciders are, by name (staff:12 and 12 alike)."""
    ids = {int(e["actor"].split(":", 1)[1]) for e in case["timeline"]
           if e["actor"].startswith("staff:") and e["actor"].split(":", 1)[1].isdigit()}
    ids |= {s["decision"]["by"] for s in case["steps"] if s.get("decision")
            and s["decision"].get("by")}
    for e in case["timeline"]:  # whom a step was transferred, delegated or copied to
        to = e["detail"].get("to")
        ids |= {t for t in (to if isinstance(to, list) else [to]) if isinstance(t, int)}
    if str(case.get("first_responder") or "").isdigit():
        ids.add(int(case["first_responder"]))
    out = {k: v[0] if lang == "zh-CN" else v[1] for k, v in ACTORS.items()}
    for e in case["timeline"]:  # a process, by what it is rather than its host and pid
        if "@" in e["actor"] and e["actor"].split("@")[0] == "sla":
            out[e["actor"]] = out["sla-clock"]
    with unit_of_work(write=False) as session:
        for staff_id, name in session.execute(select(Staff.id, Staff.name)
                                              .where(Staff.id.in_(ids))):
            out[f"staff:{staff_id}"] = out[str(staff_id)] = name
    return out


def _case(number: str, staff_id: int, lang: str) -> dict[str, Any]:
    case = actions.show_case_as(number, staff_id)
    for step in case["steps"]:
        step["due_iso"] = _due(step["due_at"])
    return {"case": case, "names": _names(case, lang)}


@router.get("/cases/{number}", response_class=HTMLResponse)
async def case_page(request: Request, number: str, principal: Page) -> Response:
    staff_id = whole_session(principal)
    after = await run_in_threadpool(events.last_id)
    found = await run_in_threadpool(_case, number, staff_id, lang_of(request))
    return render(request, "case.html", {"principal": principal, "after": after, **found,
                                         **_clock()})


@router.get("/cases/{number}/live", response_class=HTMLResponse)
async def case_live(request: Request, number: str, principal: Page) -> Response:
    found = await run_in_threadpool(_case, number, whole_session(principal), lang_of(request))
    return render(request, "_case_live.html", {**found, **_clock()})


def _summary(step_id: int, staff_id: int) -> dict[str, Any]:
    """What the step's summary shows (fetched again on every change to its case)."""
    step = actions.show_step_as(step_id, staff_id)
    step["due_iso"] = _due(step["due_at"])
    step["case_info"] = _cases([step["case"]]).get(step["case"], {})
    return step


def _step(step_id: int, staff_id: int) -> dict[str, Any]:
    """The whole step page: the summary, its form, the operations offered."""
    after = events.last_id()  # before reading: what happens meanwhile is news to the page
    step = _summary(step_id, staff_id)
    step["after"] = after
    step["form"] = stepform.fields(step)
    step["operations"] = approvals.available(step, staff_id)
    if any(f["name"] in STAFF_FIELDS for f in step["form"]):
        step["technicians"] = [p for p in approvals.colleagues(step["case"], 0)
                               if "technician" in p["roles"]]
    return step


def _own_step(principal: Principal, step_id: int) -> int:
    staff_id = staff_of(principal)
    if principal.step_id is not None and principal.step_id != step_id:
        raise Problem(403, "链接仅限一个步骤 (this link opens one step)",
                      f"一键链接只能打开步骤 {principal.step_id}", code="link_scope")
    return staff_id


@router.get("/steps/{step_id}", response_class=HTMLResponse)
async def step_page(request: Request, step_id: int, principal: Page) -> Response:
    staff_id = _own_step(principal, step_id)
    step = await run_in_threadpool(_step, step_id, staff_id)
    result = {k: request.query_params.get(k) for k in ("done", "delivery")}
    done = approvals.BY_NAME.get(result["done"] or "")
    result["label"] = (done.zh if lang_of(request) == "zh-CN" else done.en) if done else ""
    return render(request, "step.html", {"principal": principal, "step": step,
                                         "result": result, "error": None, "posted": {},
                                         **_clock()})


@router.get("/steps/{step_id}/summary", response_class=HTMLResponse)
async def step_summary(request: Request, step_id: int, principal: Page) -> Response:
    """The summary alone: the step page fetches it again when its case changes, so a
    decision or an escalation elsewhere shows without touching the form being filled in."""
    staff_id = _own_step(principal, step_id)
    step = await run_in_threadpool(_summary, step_id, staff_id)
    return render(request, "_step_summary.html", {"principal": principal, "step": step,
                                                  **_clock()})


@router.post("/steps/{step_id}/decide", response_class=HTMLResponse,
             dependencies=[Depends(auth.csrf_check)])
async def decide(request: Request, step_id: int, principal: Page) -> Response:
    staff_id = _own_step(principal, step_id)
    posted = dict((await request.form()).items())
    try:
        # Only the form is needed to read the post; the page is rebuilt on a refusal alone.
        shown = await run_in_threadpool(actions.show_step_as, step_id, staff_id)
        values = stepform.values(stepform.fields(shown), posted)
        comment = str(posted.get("comment", "")).strip()
        done = await run_in_threadpool(lambda: actions.decide_as(
            step_id, staff_id, values, comment=comment, channel="web"))
    except PropflowError as exc:
        step = await run_in_threadpool(_step, step_id, staff_id)
        return render(request, "step.html", {
            "principal": principal, "step": step, "result": {}, "posted": posted,
            "error": {"field": exc.field, "message": exc.message}, **_clock()},
            status=status_of(exc))
    query = urlencode({"done": "decided", "delivery": done["delivery"]})
    return RedirectResponse(f"/steps/{step_id}?{query}", status_code=303)


@router.post("/steps/{step_id}/{operation}", response_class=HTMLResponse,
             dependencies=[Depends(auth.csrf_check)])
async def operate(request: Request, step_id: int, operation: str, principal: Page) -> Response:
    """An approval operation (claim, transfer, ...) through propflow.actions."""
    staff_id = _own_step(principal, step_id)
    posted = dict((await request.form()).items())
    try:
        done = await run_in_threadpool(approvals.run, operation, step_id, staff_id, posted)
    except PropflowError as exc:
        step = await run_in_threadpool(_step, step_id, staff_id)
        return render(request, "step.html", {
            "principal": principal, "step": step, "result": {}, "posted": posted,
            "error": {"field": exc.field, "message": exc.message, "op": operation},
            **_clock()}, status=status_of(exc))
    # A withdrawn decision waits again as a new instance of the step: that is the page now.
    shown = done.get("reopened") if operation == "withdraw" else None
    return RedirectResponse(f"/steps/{shown or step_id}?{urlencode({'done': operation})}",
                            status_code=303)
