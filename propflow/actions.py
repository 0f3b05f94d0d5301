"""What users ask for, whatever the door (CLI, HTTP): each command one transaction."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any, Literal, get_args

from sqlalchemy import func, or_, select
from sqlalchemy.orm import object_session, selectinload

import models.operations as operations
import models.signers as signers
from core import labels
from core.clock import now
from core.errors import Forbidden, NotFound, PropflowError
from core.policy import get_policy
from core.procedures import PROCEDURES
from core.procedures import get as get_procedure
from core.roles import ROLES
from core.settings import get_settings
from core.vocabulary import CaseStatus, StepStatus
from models import directory, lifecycle, limits, notices, scope, steps
from models.authority import chain_of, reached, rule_allowing
from models.cases import Case, Decision, Step
from models.db import unit_of_work
from models.org import Staff, StaffRole, Unit
from models.outbox import AuditEvent, Notification
from tasks import runs

OPENER = f"open@{socket.gethostname()}:{os.getpid()}"


def open_case(procedure: str, fields: dict[str, Any], *, start_run: bool = True) -> dict[str, Any]:
    """A new case of any registered procedure (core/procedures.py), then its run."""
    from models import intake  # its forms are pydantic models: only when used

    with unit_of_work() as session:
        case = intake.open_case(session, procedure, fields, now())
        if start_run:
            # Claimed as it is created, so the SLA clock does not start it too meanwhile.
            runs.claim_new(case, OPENER)
        summary = case_summary(session, case)
        case_id = case.id
    if not start_run:
        return summary
    # Committed first, then Prefect is called with no transaction open: a slow or absent
    # Prefect holds no lock, and if it is away the SLA clock starts the run later.
    run_id = runs.start_claimed(case_id, summary["procedure"], summary["number"], OPENER)
    summary["flow_run_id"] = run_id
    if not run_id:
        summary["note"] = "Prefect 暂不可达：工单已保存，propflow serve 将在其恢复后启动流程"
    return summary


def opener(procedure: str) -> Callable[..., dict[str, Any]]:
    """open_case for one procedure, taking its fields as keywords."""
    def open_(*, start_run: bool = True, **fields: Any) -> dict[str, Any]:
        return open_case(procedure, fields, start_run=start_run)

    open_.__name__ = f"{get_procedure(procedure).command}_{procedure}"
    return open_


def __getattr__(name: str) -> Any:
    """open_repair, open_complaint, report_emergency, ...: <command>_<procedure> of each
    registered procedure."""
    for spec in PROCEDURES.values():
        if name == f"{spec.command}_{spec.name}":
            return opener(spec.name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def decide(step_id: int | str, staff_id: int | str, values: dict[str, Any],
           comment: str = "", channel: str = "cli") -> dict[str, Any]:
    limits.check_length(comment or "", "comment", limits.NOTE)
    with unit_of_work() as session:
        step = directory.step(session, step_id)
        person = directory.staff(session, staff_id, field="as")
        at = now()
        decision = steps.decide(session, step=step, person=person, values=values, now=at,
                                comment=comment, channel=channel)
        run_id, decided = step.case.flow_run_id, step.id
        result = {"step": decided, "case": step.case.number, "kind": step.kind,
                  "decided_by": person.id}
        if decision is None:  # one signature of several: the run has nothing to read yet
            operations.after_signing(session, step, person, at)
            # Nothing for the run to read: it goes on once the step's rule is satisfied.
            return result | {"settled": False, "values": values, "delivered": False,
                             "delivery": "signed",
                             "waiting_for": signers.waiting_for(session, step)}
        result.update(values=decision.values, settled=True, decided_by=decision.decided_by)
    return result | delivery(run_id, decided)


def delivery(run_id: str | None, step_id: int) -> dict[str, Any]:
    """Wake the run for a stored decision and say truthfully whether it has it.

    Stored first, then the run is woken; until the run has read the decision the SLA clock
    keeps waking it, so a failed wake here loses nothing, and the answer says so. A wake can
    also fail because the run already read the decision (the SLA clock woke it meanwhile and
    it went on, even to its end): that is delivered, not queued."""
    woke = runs.wake(run_id)
    if woke or _read_already(step_id):
        return {"delivered": True, "delivery": "delivered"}
    return {"delivered": False, "delivery": "queued",
            "reason": getattr(woke, "reason", "") or runs.AGAIN.format(
                n=f"{get_settings().sla_interval_seconds:g}")}


def _read_already(step_id: int) -> bool:
    with unit_of_work(write=False) as session:
        return session.scalar(select(Decision.delivered_at)
                              .where(Decision.step_id == step_id)) is not None


# --- approval operations (models/operations.py): each one transaction, audited; those that
# change what the run waits for (send back, withdraw) wake it afterwards, as decide() does.

def _operate(step_id: int | str, staff_id: int | str,
             do: Callable[[Any, Step, Staff, Any], dict[str, Any]],
             wake: bool = False) -> dict[str, Any]:
    with unit_of_work() as session:
        step = directory.step(session, step_id)
        person = directory.staff(session, staff_id, field="as")
        result = do(session, step, person, now())
        run_id = step.case.flow_run_id
    if wake:
        # Stored first; a run not woken now finds the rewind when the reopened step is
        # decided (that decision wakes it, and is redelivered until read).
        result["delivery"] = "delivered" if runs.wake(run_id) else "queued"
    return result


def claim(step_id: int | str, staff_id: int | str) -> dict[str, Any]:
    """认领 an unassigned step of one's role."""
    return _operate(step_id, staff_id, operations.claim)


def unclaim(step_id: int | str, staff_id: int | str) -> dict[str, Any]:
    """退回 a claimed step to its role."""
    return _operate(step_id, staff_id, operations.unclaim)


def transfer(step_id: int | str, staff_id: int | str, to: int | str,
             reason: str = "") -> dict[str, Any]:
    """转办 to a colleague holding the step's role."""
    return _operate(step_id, staff_id, lambda s, st, p, at: operations.transfer(
        s, st, p, to, reason, at))


def delegate(step_id: int | str, staff_id: int | str, to: int | str,
             reason: str = "") -> dict[str, Any]:
    """委派: the colleague's answer comes back as a proposal for the final word."""
    return _operate(step_id, staff_id, lambda s, st, p, at: operations.delegate(
        s, st, p, to, reason, at))


def add_signer(step_id: int | str, staff_id: int | str, to: int | str,
               position: str = "before", reason: str = "") -> dict[str, Any]:
    """加签 before (they sign first, then it returns) or after (they approve after you)."""
    return _operate(step_id, staff_id, lambda s, st, p, at: operations.add_signer(
        s, st, p, to, position, reason, at))


def cc(step_id: int | str, staff_id: int | str, to: list[int | str] | int | str,
       reason: str = "") -> dict[str, Any]:
    """抄送: told, and may look; never decide. `to`: ids, or "3,5"."""
    targets: list[int | str] = list(to) if isinstance(to, list) else [
        t for t in str(to).split(",") if t.strip()]
    return _operate(step_id, staff_id, lambda s, st, p, at: operations.cc(
        s, st, p, targets, reason, at))


def send_back(step_id: int | str, staff_id: int | str, reason: str) -> dict[str, Any]:
    """驳回 to the previous human step, with the reason; the run goes back through it."""
    return _operate(step_id, staff_id, lambda s, st, p, at: operations.send_back(
        s, st, p, reason, at), wake=True)


def withdraw(step_id: int | str, staff_id: int | str, reason: str = "") -> dict[str, Any]:
    """撤回 one's decision while the next step is untouched; the step waits again."""
    return _operate(step_id, staff_id, lambda s, st, p, at: operations.withdraw(
        s, st, p, reason, at), wake=True)


def role_now(step: Step) -> str:
    """Where a step waits now: an escalated step is listed under the role it reached."""
    return (step.escalations[-1].to_role or step.role) if step.escalations else step.role


def _name(session: Any, staff_id: int | None) -> str | None:
    person = session.get(Staff, staff_id) if staff_id else None
    return person.name if person else None


def step_row(step: Step) -> dict[str, Any]:
    session = object_session(step)
    return {
        "id": step.id, "case": step.case.number, "step": step.kind, "key": step.key,
        "role": role_now(step), "escalated_from": step.role if step.escalations else None,
        "assignee": step.assignee_id, "assignee_name": _name(session, step.assignee_id),
        "due_at": notices.local(step.due_at), "level": step.level, "status": step.status,
        "breached": step.breached,
    }


def _mine(step: Step, person: Staff, parts: set[int] | None = None) -> bool:
    """Addressed to this person: assigned to them, their role, or escalated to their level;
    the owner's own steps for whoever records them (the rules are models.authority's); and
    a step where their signature is up (models.signers; `parts`: the steps where they might
    have one, read for a whole list at once)."""
    def up() -> bool:
        if parts is not None and step.id not in parts:
            return False
        return signers.has_turn(object_session(step), step, person)  # type: ignore[arg-type]

    rule = rule_allowing(step, person)
    if signers.mode(step) and rule in ("assignee", "role"):  # a 会签 step: their place is up
        return up()
    owner_step = rule == "stand_in" and step.role not in ROLES
    return rule in ("assignee", "role", "chain") or owner_step or up()


def list_steps(case: str | None = None, role: str | None = None,
               status: StepStatus | None = StepStatus.WAITING, mine: int | str | None = None,
               overdue: bool = False, copied: int | str | None = None) -> list[dict[str, Any]]:
    """Steps by case, by the role they wait on now, as one person's work, overdue, or those
    a person was copied on (抄送)."""
    if role:  # a misspelt role would list nothing and look like an empty queue
        directory.role(role)
    with unit_of_work(write=False) as session:
        person = directory.staff(session, mine, field="as") if mine is not None else None
        query = select(Step).join(Case).order_by(Step.due_at, Step.id)
        if case:
            query = query.where(Case.id == directory.case(session, case).id)
        if status:
            query = query.where(Step.status == status)
        if overdue:
            query = query.where(Step.status == StepStatus.WAITING,
                                or_(Step.breached.is_(True), Step.due_at <= now()))
        found = list(session.scalars(query.options(selectinload(Step.case))))
        if role:
            found = [s for s in found if role_now(s) == role]
        if person is not None:
            parts = signers.steps_with_part(session, person, [s.id for s in found])
            found = [s for s in found if _mine(s, person, parts)]
        if copied is not None:
            watched = signers.copied_to(session, directory.staff(session, copied, field="as"))
            found = [s for s in found if s.id in watched]
        return [step_row(s) for s in found]


def _window(step: Step) -> str:
    rule = get_policy().rule(step.case.procedure, step.kind, step.case.priority)
    if rule.workdays:
        return f"{rule.workdays} 个工作日 ({rule.workdays} working days)"
    # Hours, not days: on the business calendar a day of window is 24 working hours.
    hours, minutes = divmod(step.window_seconds // 60, 60)
    text = "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m")) if n)
    zh, en = labels.CALENDARS.get(step.calendar, (step.calendar, step.calendar))
    return f"{text or '0m'} {zh} ({en})"


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation)).replace("datetime.", "")


def show_step(step_id: int | str) -> dict[str, Any]:
    """One step as whoever must act on it needs it: its form, window, level, who decides."""
    from models.forms import FORMS, form_key  # pydantic forms: only this command needs them

    with unit_of_work(write=False) as session:
        step = directory.step(session, step_id)
        out = step_row(step)
        chain = chain_of(step)
        form = FORMS[form_key(step.case.procedure, step.kind)]
        out.update(
            procedure=step.case.procedure, case_status=step.case.status,
            window=_window(step), calendar=step.calendar,
            opened_at=notices.local(step.opened_at), warn_at=notices.local(step.warn_at),
            chain=chain, next_role=chain[step.level] if step.level < len(chain) else None,
            escalations=[{"level": e.level, "to_role": e.to_role,
                          "lapsed_at": notices.local(e.lapsed_at)} for e in step.escalations],
            fields=[{"name": name, "type": _type_name(info.annotation),
                     "required": info.is_required(), "description": info.description or ""}
                    for name, info in form.model_fields.items()],
            may_decide=[] if step.status != StepStatus.WAITING else _deciders(session, step),
            sign_mode=signers.mode(step), signers=signers.shown(session, step),
            waiting_for=signers.waiting_for(session, step)
            if step.status == StepStatus.WAITING else [],
            replaced_by=step.replaced_by, rewound=step.rewound, claimed_by=step.claimed_by,
            duty=(step.context or {}).get("duty", ""),
        )
        if step.decision:
            d = step.decision
            out["decision"] = {"by": d.decided_by, "by_name": _name(session, d.decided_by),
                               "values": d.values, "comment": d.comment, "channel": d.channel,
                               "at": notices.local(d.created_at)}
        return out


def _deciders(session: Any, step: Step) -> list[dict[str, Any]]:
    """Everyone the rules let decide the step now, each with the rule that lets them."""
    out = []
    for person in _staff_of(session, step.case.community_id):
        try:
            rule = signers.turn(session, step, person).rule
        except Forbidden:
            continue
        out.append({"id": person.id, "name": person.name, "rule": rule,
                    "roles": sorted(directory.roles_of(person, step.case.community_id))})
    return out


def _staff_of(session: Any, community_id: int) -> list[Staff]:
    """Active staff with a role in the community or at company level."""
    query = (select(Staff).join(StaffRole, StaffRole.staff_id == Staff.id)
             .where(Staff.active.is_(True),
                    or_(StaffRole.community_id == community_id, StaffRole.community_id.is_(None)))
             .order_by(Staff.id))
    return list(dict.fromkeys(session.scalars(query)))


def case_summary(session: Any, case: Case) -> dict[str, Any]:
    unit = session.get(Unit, case.unit_id) if case.unit_id else None
    return {
        "number": case.number, "status": case.status, "procedure": case.procedure,
        "unit": unit.code if unit else None, "category": case.category,
        "priority": case.priority, "paid": case.paid, "assignee": case.assignee_id,
        "reporter": case.reporter_name, "outcome": case.outcome,
        "created_at": notices.local(case.created_at), "closed_at": notices.local(case.closed_at),
        "flow_run_id": case.flow_run_id,
        # As run supervision last saw it; once closed, the run no longer matters.
        "run_state": case.run_state if case.status != CaseStatus.CLOSED else None,
        "run_restarts": case.run_restarts or 0,
    }


def list_cases() -> list[dict[str, Any]]:
    with unit_of_work(write=False) as session:
        return [case_summary(session, c) for c in session.scalars(select(Case).order_by(Case.id))]


def repair_progress(number: str, staff_id: int | str, note: str) -> dict[str, Any]:
    """A progress note on a repair under way; the owner hears the hour's notes as one
    message (models.progress, sent by the SLA clock)."""
    from models import progress

    with unit_of_work() as session:
        return progress.post(session, directory.case(session, number), staff_id, note, now())


def show_case(number: str) -> dict[str, Any]:
    from models import intake

    with unit_of_work(write=False) as session:
        case = directory.case(session, number)
        out = case_summary(session, case)
        out["description"] = case.description
        out["links"] = lifecycle.links_of(session, case)
        out["first_responder"] = case.data.get("first_responder")
        out["details"] = intake.model_of(case.procedure).details(session, case)
        out["steps"] = []
        for step in case.steps:
            row = step_row(step)
            if step.decision:
                d = step.decision
                row["decision"] = {"by": d.decided_by, "values": d.values, "comment": d.comment,
                                   "channel": d.channel, "override": d.override,
                                   "at": notices.local(d.created_at)}
            row["escalations"] = [
                {"level": e.level, "to_role": e.to_role, "lapsed_at": notices.local(e.lapsed_at),
                 "handled_at": notices.local(e.handled_at)} for e in step.escalations]
            out["steps"].append(row)
        out["notifications"] = notification_rows(session, case.id)
        out["timeline"] = [
            {"at": notices.local(a.at), "actor": a.actor, "action": a.action, "detail": a.detail}
            for a in session.scalars(select(AuditEvent).where(AuditEvent.case_id == case.id)
                                     .order_by(AuditEvent.id))]
        return out


def notification_rows(session: Any, case_id: int | None,
                      to: str | None = None) -> list[dict[str, Any]]:
    """What was sent, as shown to staff: an owner is addressed by phone (`owner:<phone>`),
    and a phone is never shown, so it is masked here as in our logs."""
    from core.faults import mask

    query = (select(Notification, Case.number).outerjoin(Case, Case.id == Notification.case_id)
             .order_by(Notification.id))
    if case_id is not None:
        query = query.where(Notification.case_id == case_id)
    if to is not None:
        query = query.where(Notification.recipient == to)
    return [{"id": n.id, "case": number, "event": n.event, "to": n.recipient_name,
             "recipient": mask(n.recipient), "channel": n.channel, "status": n.status,
             "subject": n.subject, "created_at": notices.local(n.created_at),
             "attempts": n.attempts, "error": mask(n.last_error) if n.last_error else None}
            for n, number in session.execute(query)]


def list_notifications(case: str | None = None,
                       to: int | str | None = None) -> list[dict[str, Any]]:
    """The outbox, of one case or to one member of staff (what reached their inbox and where)."""
    with unit_of_work(write=False) as session:
        case_id = directory.case(session, case).id if case else None
        person = directory.staff(session, to, field="to") if to is not None else None
        return notification_rows(session, case_id, f"staff:{person.id}" if person else None)


# Scoped to whoever asks (the web door; the CLI could pass its --as the same way): what they
# see is models.scope's rule, what they may decide models.authority's. A case or step out of
# their scope is answered as one that does not exist.


def _viewer(session: Any, viewer: int | str) -> Staff:
    return directory.staff(session, viewer, field="as")


def prefect_run_url(run_id: str | None) -> str | None:
    """The run's page in the Prefect UI: PREFECT_UI_URL, else the UI beside PREFECT_API_URL."""
    if not run_id:
        return None
    ui = os.environ.get("PREFECT_UI_URL") or os.environ.get(
        "PREFECT_API_URL", "http://127.0.0.1:4200/api").rstrip("/").removesuffix("/api")
    return f"{ui.rstrip('/')}/runs/flow-run/{run_id}"


def overdue_steps() -> Any:
    """A WHERE clause on Step: waiting, and past its window (or already found breached)."""
    return (Step.status == StepStatus.WAITING) & or_(Step.breached.is_(True), Step.due_at <= now())


def find_cases(viewer: int | str, *, procedure: str | None = None,
               status: CaseStatus | None = None, community: str | None = None,
               overdue: bool = False, q: str | None = None, limit: int = 50,
               offset: int = 0) -> dict[str, Any]:
    """The cases the viewer sees, newest first, filtered and paged."""
    from models import intake

    with unit_of_work(write=False) as session:
        person = _viewer(session, viewer)
        query = select(Case).where(scope.cases_where(session, person))
        if procedure:
            query = query.where(Case.procedure == intake.procedure(procedure).name)
        if status:
            query = query.where(Case.status == status)
        if community:
            query = query.where(Case.community_id == directory.community(session, community).id)
        if overdue:
            query = query.where(Case.id.in_(select(Step.case_id).where(overdue_steps())))
        if q:
            query = query.where(Case.number.contains(q.strip(), autoescape=True))
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        page = session.scalars(query.order_by(Case.id.desc()).limit(limit).offset(offset))
        return {"items": [case_summary(session, c) for c in page], "total": total or 0,
                "limit": limit, "offset": offset}


def show_case_as(number: str, viewer: int | str) -> dict[str, Any]:
    with unit_of_work(write=False) as session:
        found = scope.case(session, _viewer(session, viewer), directory.case(session, number))
        number = found.number
    out = show_case(number)
    out["prefect_url"] = prefect_run_url(out["flow_run_id"])
    return out


StepView = Literal["mine", "role", "overdue", "escalated", "copied"]
VIEWS: tuple[str, ...] = get_args(StepView)


def steps_as(viewer: int | str, view: str = "mine") -> list[dict[str, Any]]:
    """Waiting steps in the viewer's scope: mine (assigned, my role, escalated to me), my
    roles' queue, overdue ones, those escalated to a level I hold, or copied to me (抄送)."""
    if view not in VIEWS:
        raise PropflowError(f"view：{view!r} 不是有效视图；expected one of {list(VIEWS)}",
                            field="view")
    with unit_of_work(write=False) as session:
        person = _viewer(session, viewer)
        query = (select(Step).join(Case).where(Step.status == StepStatus.WAITING,
                                               scope.cases_where(session, person))
                 .order_by(Step.due_at, Step.id).options(selectinload(Step.case)))
        if view == "overdue":
            query = query.where(overdue_steps())
        if view == "escalated":
            query = query.where(Step.level > 0)
        if view == "copied":
            query = query.where(Step.id.in_(sorted(signers.copied_to(session, person))))
        found = list(session.scalars(query))
        # Where their signature might be up, read for the whole list at once.
        parts = signers.steps_with_part(session, person, [s.id for s in found]) \
            if view == "mine" else set()

        def keep(s: Step) -> bool:
            if view == "mine":
                return _mine(s, person, parts)
            held = directory.roles_of(person, s.case.community_id)
            if view == "role":
                return role_now(s) in held
            if view == "escalated":
                return bool(held & set(reached(s)))
            return True  # overdue, copied: the query chose them

        return [step_row(s) for s in found if keep(s)]


def sees_step(step_id: int | str, viewer: int | str) -> int:
    """The step's id when the viewer sees it; else NotFound, as for a step that does not
    exist."""
    with unit_of_work(write=False) as session:
        return scope.step(session, _viewer(session, viewer), directory.step(session, step_id)).id


def show_step_as(step_id: int | str, viewer: int | str) -> dict[str, Any]:
    """show_step, in the viewer's scope, with the form's JSON schema for a client to build."""
    from models.forms import FORMS, form_key

    out = show_step(sees_step(step_id, viewer))
    out["form_schema"] = FORMS[form_key(out["procedure"], out["step"])].model_json_schema()
    return out


def decide_as(step_id: int | str, viewer: int | str, values: dict[str, Any],
              comment: str = "", channel: str = "api") -> dict[str, Any]:
    return decide(sees_step(step_id, viewer), viewer, values, comment=comment, channel=channel)


def open_case_as(procedure: str, fields: dict[str, Any], viewer: int | str, *,
                 start_run: bool = True) -> dict[str, Any]:
    """open_case by a member of staff, in a community of theirs; they are who received it
    (received_by) unless the fields name someone else."""
    from models import intake

    with unit_of_work() as session:
        person = _viewer(session, viewer)
        place = intake.check(procedure, fields).place(session)
        if not scope.sees(session, person, place.community_id):
            field = "unit" if place.unit else "community"
            raise Forbidden(f"{field}：该工单所在项目不在员工 {person.id} 的项目范围内；规则"
                            "（scope）：员工只能在其任职的项目登记工单；expected a unit or "
                            "community where you hold a role", field=field)
        viewer = person.id
    if "received_by" in intake.model_of(procedure).model_fields \
            and fields.get("received_by") is None:
        fields = {**fields, "received_by": viewer}
    return open_case(procedure, fields, start_run=start_run)


def notifications_as(viewer: int | str, *, unread: bool = False) -> list[dict[str, Any]]:
    """What was sent to the viewer, with when they read it."""
    with unit_of_work(write=False) as session:
        person = _viewer(session, viewer)
        rows = notification_rows(session, None, f"staff:{person.id}")
        read = dict(session.execute(select(Notification.id, Notification.read_at).where(
            Notification.recipient == f"staff:{person.id}")).all())
    for row in rows:
        row["read_at"] = notices.local(read.get(row["id"]))
    return [r for r in rows if not (unread and r["read_at"])]


def mark_read(notification_id: int | str, viewer: int | str) -> dict[str, Any]:
    """Mark a notification to the viewer read (once: the first reading is kept)."""
    with unit_of_work() as session:
        person = _viewer(session, viewer)
        pk = int(notification_id) if str(notification_id).isdigit() else 0
        found = session.get(Notification, pk) if 0 < pk <= directory.MAX_ID else None
        if found is None or found.recipient != f"staff:{person.id}":
            raise NotFound(f"notification：没有发给员工 {person.id} 的通知 {notification_id!r}；"
                           "expected an id from GET /api/notifications", field="notification")
        if found.read_at is None:
            found.read_at = now()
        return {"id": found.id, "read_at": notices.local(found.read_at)}


# --- one-tap links (models/links.py): a staff member's step, an owner's answer ----------------

def open_staff_link(token: str) -> dict[str, Any]:
    """Use a staff member's one-tap link (once): whom it signs in, for which step alone."""
    from models import links

    with unit_of_work() as session:
        link = links.consume(session, token, "staff", now())
        return {"staff_id": link.staff_id, "step_id": link.step_id,
                "expires_at": notices.local(link.expires_at)}


def owner_view(token: str) -> dict[str, Any]:
    """What an owner's link shows: their case in brief (no staff internals, no phone
    numbers), the step it asks about, and whether it can still be answered."""
    from models import links

    with unit_of_work(write=False) as session:
        link = links.find(session, token, "owner")
        return _owner_view(session, link)


def _owner_view(session: Any, link: Any) -> dict[str, Any]:
    from core.faults import mask
    from models import links

    step, case = link.step, link.step.case
    lang = get_policy().lang
    unit = session.get(Unit, case.unit_id) if case.unit_id else None
    done = [s for s in case.steps if s.kind == "complete" and s.decision]
    work = done[-1].decision.values if done else {}
    try:
        links.usable(link, now())
        gone = None
    except links.LinkGone as exc:
        gone = exc.reason
    decision = step.decision
    return {
        "number": case.number, "procedure_label": labels.procedure(case.procedure, lang),
        "unit": unit.code if unit else "", "summary": mask(case.description),
        "case_status": str(case.status), "step": step.kind,
        "step_label": labels.step(case.procedure, step.kind, lang),
        "step_status": str(step.status), "due": notices.local(step.due_at),
        "work": {k: mask(str(work[k])) for k in ("diagnosis", "work_done", "charge")
                 if work.get(k) not in (None, "")},
        "answer": decision.values if decision else None,
        "answered_by_owner": bool(decision and decision.channel == "owner_link"),
        "link": gone or "usable", "expires_at": notices.local(link.expires_at),
        "form_token": link.form_token,
        # Only a usable link to a waiting step shows the form; otherwise the state.
        "answerable": gone is None and step.status == StepStatus.WAITING,
    }


def decide_as_owner(token: str, values: dict[str, Any], *, form_token: str) -> dict[str, Any]:
    """The owner's answer through their link (channel owner_link): the link is used and the
    decision stored in one transaction, then the run is woken, as decide() does."""
    import hmac

    from models import links

    with unit_of_work() as session:
        link = links.find(session, token, "owner")
        if not hmac.compare_digest(form_token or "", link.form_token):
            raise Forbidden("csrf：表单已失效，请重新打开消息中的链接；expected the form "
                            "of this link", field="csrf")
        decision = links.owner_decides(session, link, values, now())
        run_id = link.step.case.flow_run_id
        step_id = link.step_id
        result = {"step": step_id, "case": link.step.case.number, "kind": link.step.kind,
                  "values": decision.values, "channel": decision.channel}
    return result | delivery(run_id, step_id)


# --- reception day (接访日) ----------------------------------------------------------------

WEEKDAYS = "一二三四五六日"


def reception_days(year: int) -> list[dict[str, Any]]:
    """The year's reception days: the first Friday of each month, or the next working day."""
    from models import reception

    if not 2000 <= year <= 2100:
        raise PropflowError(f"year：{year} 超出范围；expected a year such as 2026", field="year")
    policy = get_policy()
    out = []
    for day in reception.days(policy, year):
        start, end = reception.hours(policy, day.held)
        out.append({"day": day.held.isoformat(), "weekday": f"星期{WEEKDAYS[day.held.weekday()]}",
                    "start": notices.local(start)[-5:], "end": notices.local(end)[-5:],
                    "scheduled": day.scheduled.isoformat(), "postponed": day.postponed})
    return out


def announce_reception_days() -> list[dict[str, str]]:
    """What the reception deployment's schedule does each day, now: residents and managers
    told of a reception day within its notice period (once per community and day)."""
    from models import reception

    with unit_of_work() as session:
        return reception.announce_due(session, now())


def new_link(step_id: int | str, as_staff: int | str,
             for_staff: int | str | None = None) -> dict[str, Any]:
    """A fresh one-tap link to a waiting step, for the front desk to send on: the owner's
    (an owner step; whoever asks must be able to record the owner's answer) or a member of
    staff's (who must be able to decide the step). Audited."""
    from models import links
    from models.authority import rule_allowing
    from models.outbox import audit

    with unit_of_work() as session:
        step = directory.step(session, step_id)
        person = directory.staff(session, as_staff, field="as")
        target = directory.staff(session, for_staff, field="for") if for_staff is not None \
            else None
        if step.status != StepStatus.WAITING:
            raise PropflowError(f"step：步骤 {step.id} 已处理（{step.status}），无需链接；expected "
                                "a waiting step from `propflow steps list`", field="step")
        if target is None and (step.role != "owner" or step.kind not in links.OWNER_STEPS):
            raise PropflowError(f"for：步骤 {step.id}（{step.kind}）不是业主的步骤；expected "
                                f"--for STAFF, or a step among {list(links.OWNER_STEPS)}",
                                field="for")
        if rule_allowing(step, target or person) is None:
            who = f"员工 {(target or person).id}"
            raise Forbidden(f"{'for' if target else 'as'}：{who}无权处理步骤 {step.id}，链接对其"
                            "无用；expected someone `propflow steps show` lists under may decide",
                            field="for" if target else "as")
        at = now()
        audience: links.Audience = "staff" if target else "owner"
        token = links.mint(session, step=step, audience=audience, now=at,
                           staff_id=target.id if target else None)
        audit(session, at=at, actor=f"staff:{person.id}", action="link_created",
              case_id=step.case_id, step=step.key, audience=audience,
              staff=target.id if target else None)
        ttl = get_policy().links.staff_ttl if target else get_policy().links.owner_ttl
        return {"step": step.id, "case": step.case.number, "for": audience if target is None
                else f"staff:{target.id}", "url": links.url(token, audience),
                "expires_at": notices.local(at + ttl)}
