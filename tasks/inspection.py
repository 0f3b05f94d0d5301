"""Inspection rounds' side effects: making a fire time's rounds and starting their runs, and
what a checkpoint's finding sets off. Each is idempotent under replay."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Any

from core.clock import now
from core.policy import get_policy
from core.vocabulary import Role
from models import inspection, lifecycle, notices
from models.db import unit_of_work
from models.intake import open_case
from models.org import Resident, Staff
from models.outbox import Recipient, audit
from tasks import runs
from tasks.cases import load
from tasks.retries import db_task

OPENER = f"inspection-planner@{socket.gethostname()}:{os.getpid()}"
# A scheduled run looks back this far for its fire time: a run taken late, or a service that
# was down for a while, still makes the rounds whose patrol window is not over.
LOOK_BACK = timedelta(days=1)


def open_rounds(due: list[inspection.Due], *, start: bool = True) -> list[str]:
    """Make each round once (its unique key, models.inspection) and start its run (or,
    without `start`, leave that to the SLA clock's next pass); the numbers of the rounds
    this call made. Each in its own transaction: a round another replica made is skipped,
    not a failure of the rest."""
    policy = get_policy()
    made: list[tuple[int, str]] = []
    for item in due:
        with unit_of_work() as session:
            case = inspection.open_round(session, item, policy, now())
            if case is None:
                continue
            if start:
                runs.claim_new(case, OPENER)  # so the SLA clock does not start it as well
            made.append((case.id, case.number))
    # Outside the transactions: if Prefect is away the SLA clock starts them later.
    for case_id, _ in made if start else []:
        runs.start_pending(case_id, OPENER)
    return [number for _, number in made]


def rounds_between(after: datetime, until: datetime, plans: list[str] | None = None,
                   *, open_only: bool = False, start: bool = True) -> list[str]:
    """The rounds of every plan (or these) whose fire time fell in (after, until]; with
    `open_only`, only those whose patrol window has not ended by `until`."""
    policy = get_policy()
    with unit_of_work(write=False) as session:
        due = inspection.due_rounds(session, policy, after, until, plans)
    if open_only:
        due = [d for d in due if inspection.round_end(policy, d.plan, d.fire_at) > until]
    return open_rounds(due, start=start)


@db_task(name="plan-rounds", task_run_name="plan-rounds {plan}")
def plan_rounds(plan: str) -> list[str]:
    """A plan's scheduled run: the rounds of its latest fire time, in every community."""
    at = now()
    return rounds_between(at - LOOK_BACK, at + timedelta(minutes=1), [plan], open_only=True)


def _reporter(session: Any, case: Any, decided_by: int | None) -> tuple[str, str]:
    """Who reports what a round found: the one who checked it, with their phone, else the
    front desk's (a repair needs a number to call back)."""
    person = session.get(Staff, decided_by) if decided_by else None
    people = [person] if person and person.phone else []
    from models.directory import people_in_role

    people += [p for p in people_in_role(session, case.community_id, Role.CSR) if p.phone]
    first = people[0] if people else None
    return (first.name, first.phone) if first else ("巡查", "")


@db_task(name="act-on-finding", task_run_name="act-on-finding {key}")
def act_on_finding(case_id: int, key: str, values: dict[str, Any],
                   decided_by: int | None) -> dict[str, Any]:
    """What a checkpoint's finding sets off (PROCEDURES.md §7), once per step: a broken
    facility a linked repair, a gas smell a linked emergency, a shop's fire-safety failure a
    rectification notice (整改通知书) and a follow-up, a vacant unit's defect the developer's
    warranty centre told and a recheck next month, a renovation violation its record.
    Returns what was done; `follow_up` is the follow-up's due time when there is one."""
    finding = values.get("finding") or "none"
    started: list[int] = []
    with unit_of_work() as session:
        case = load(session, case_id)
        acted = dict(case.data.get("acted", {}))
        if key in acted or finding == "none":
            known: dict[str, Any] = acted.get(key, {})
            return known
        at, note, unit = now(), values.get("note", ""), values.get("unit", "")
        checkpoint = key.split("#", 1)[1]
        label = next((c["label"] for c in case.data["checkpoints"] if c["key"] == checkpoint),
                     checkpoint)
        done: dict[str, Any] = {"finding": finding}
        if finding in ("broken_facility", "gas_smell"):
            name, phone = _reporter(session, case, decided_by)
            if finding == "broken_facility":
                opened = open_case(session, "repair", dict(
                    unit=unit, category="public_area", priority="medium", reporter=name,
                    phone=phone, channel="patrol", description=f"巡查发现（{label}）：{note}",
                    community=_community_code(session, case)), at)
                relation = "repair_from_round"
            else:
                opened = open_case(session, "emergency", dict(
                    kind="gas_leak", community=_community_code(session, case),
                    location=f"{label}{'（' + unit + '）' if unit else ''}：{note}",
                    reporter=name, buildings=case.data.get("buildings", []),
                    phone=phone), at)
                relation = "emergency_from_round"
            lifecycle.link(session, case, opened, relation, at)
            runs.claim_new(opened, OPENER)
            started.append(opened.id)
            done["case"] = opened.number
        elif finding == "fire_safety":
            due = at + get_policy().procedures["inspection"].rectify_within
            notice = f"{case.number}-{checkpoint}"
            to = [*_unit_occupants(session, case.community_id, unit),
                  *notices.role_recipients(session, case, Role.CS_SUPERVISOR)]
            notices.tell(session, case=case, event="rectification_notice", to=to,
                         key=f"case:{case_id}:notice:{checkpoint}", now=at, shop=unit,
                         checkpoint=label, problem=note, notice=notice,
                         deadline=notices.local(due))
            audit(session, at=at, actor="flow", action="rectification_notice", case_id=case_id,
                  step=key, notice=notice, shop=unit, problem=note, deadline=due.isoformat())
            done.update(notice=notice, follow_up=due.isoformat(), shop=unit)
        elif finding == "vacant_defect":
            inspection.mark_recheck(session, case, unit, note, at)
            notices.tell(session, case=case, event="vacant_defect", key=f"case:{case_id}:"
                         f"warranty:{checkpoint}", now=at, vacant_unit=unit, problem=note,
                         to=notices.role_recipients(session, case, Role.DEVELOPER_WARRANTY))
            done["recheck"] = unit
        elif finding == "renovation_violation":
            # Stopped on the spot (seed); the record is what the round keeps of it.
            audit(session, at=at, actor=f"staff:{decided_by}" if decided_by else "flow",
                  action="renovation_violation", case_id=case_id, step=key, unit=unit,
                  note=note)
        case.data = {**case.data, "acted": {**acted, key: done}}
    for opened_id in started:
        runs.start_pending(opened_id, OPENER)
    return done


@db_task(name="follow-up-result", task_run_name="follow-up-result {key}")
def follow_up_result(case_id: int, key: str, rectified: bool, note: str) -> None:
    """A shop still not rectified at the follow-up: the supervisor is told."""
    if rectified:
        return
    with unit_of_work() as session:
        case = load(session, case_id)
        checkpoint = key.split("#", 1)[1]
        shop = case.data.get("acted", {}).get(f"checkpoint#{checkpoint}", {}).get("shop", "")
        audit(session, at=now(), actor="flow", action="not_rectified", case_id=case_id,
              step=key, shop=shop, note=note)
        notices.tell(session, case=case, event="not_rectified", now=now(), shop=shop,
                     problem=note, key=f"case:{case_id}:not_rectified:{checkpoint}",
                     to=notices.role_recipients(session, case, Role.CS_SUPERVISOR))


def _community_code(session: Any, case: Any) -> str:
    from models.org import Community

    found = session.get(Community, case.community_id)
    return str(found.code) if found else ""


def _unit_occupants(session: Any, community_id: int, code: str) -> list[Recipient]:
    """The shop's own people, as an owner is reached (by phone: SMS or the desk)."""
    from sqlalchemy import select

    unit = inspection.unit_code(session, community_id, code)
    people = session.scalars(select(Resident).where(Resident.unit_id == unit.id)
                             .order_by(Resident.id)).all()
    return [Recipient(key=f"owner:{p.phone}", name=p.name, mobile=p.phone) for p in people]
