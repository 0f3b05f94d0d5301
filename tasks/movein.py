"""Move-in side effects: the fee, the defect repairs, custody alerts. Idempotent under replay."""

from __future__ import annotations

import os
import socket
from decimal import Decimal
from typing import Any

from core import labels
from core.clock import now
from core.policy import get_policy
from core.vocabulary import Role
from models import lifecycle, movein, notices, steps
from models.db import unit_of_work
from models.intake import open_case
from models.org import Unit
from models.outbox import audit
from tasks import runs
from tasks.cases import load
from tasks.retries import db_task

OPENER = f"open-defect-repairs@{socket.gethostname()}:{os.getpid()}"


@db_task(name="movein-fee")
def fee(case_id: int, area: str) -> dict[str, Any]:
    """The fees at the policy's rates, worked out once: a replay after a policy edit must
    ask the owner for the same sum."""
    with unit_of_work() as session:
        case = load(session, case_id)
        if "fee" not in case.data:
            due = movein.fee_due(Decimal(area), bool(case.data.get("custody")))
            case.data = {**case.data, "fee": due}
            audit(session, at=now(), actor="flow", action="fee_due", case_id=case_id,
                  total=due["total"], items=due["items"], share=due["share"])
        found: dict[str, Any] = case.data["fee"]
        return found


@db_task(name="note-missing", task_run_name="note-missing {what}")
def note_missing(case_id: int, what: str, key: str, keys: list[str]) -> None:
    """A document or a signature still missing: on the timeline, and the step is asked again."""
    with unit_of_work() as session:
        audit(session, at=now(), actor="flow", action=f"{what}_missing", case_id=case_id,
              step=key, missing=keys)


@db_task(name="open-defect-repairs", task_run_name="open-defect-repairs #{round_}")
def open_defect_repairs(case_id: int, round_: int, defects: list[dict[str, str]]) -> list[str]:
    """One repair per defect, linked to the move-in (the warranty centre's when the unit is
    under warranty: models.repair), and the step that waits for them, in one transaction:
    closing the last repair settles it (models.lifecycle.release_waiting)."""
    key = str(round_)
    with unit_of_work() as session:
        case = load(session, case_id)
        rounds = case.data.get("defect_rounds", {})
        if key not in rounds:
            unit = session.get(Unit, case.unit_id)
            category = get_policy().procedures["movein"].defect_category
            opened: list[list[Any]] = []
            for defect in defects:
                repair = open_case(session, "repair", dict(
                    unit=unit.code if unit else "", category=category, priority="medium",
                    reporter=case.reporter_name, phone=case.reporter_phone,
                    description=f"入住验收缺陷（{movein.room_label(defect['room'])}）："
                                f"{defect['item']}",
                    channel="front_desk", defect_of=case.number), now())
                runs.claim_new(repair, OPENER)  # so the SLA clock does not start it as well
                opened.append([repair.id, repair.number])
            numbers = "、".join(str(n) for _, n in opened)
            steps.open_step(session, case=case, key=f"rectification#{round_}",
                            kind="rectification", role=Role.TECH_SUPERVISOR, now=now(),
                            context={lifecycle.WAITS_FOR: "defect",
                                     "duty": f"督促缺陷整改：{numbers}（全部关闭后自动完成）"})
            case.data = {**case.data, "defect_rounds": {**rounds, key: opened}}
        pairs: list[list[Any]] = case.data["defect_rounds"][key]
    # Outside the transaction: if Prefect is away the SLA clock starts them later.
    for repair_id, _ in pairs:
        runs.start_pending(repair_id, OPENER)
    return [str(pair[1]) for pair in pairs]


@db_task(name="custody-readings", task_run_name="custody-readings {key}")
def custody_readings(case_id: int, key: str, water: str, electricity: str) -> dict[str, str]:
    """Readings above the custody limits alert the CS supervisor (seed: an alert if exceeded)."""
    with unit_of_work() as session:
        case = load(session, case_id)
        over = movein.over_custody_limits(water, electricity)
        if over:
            lang = get_policy().lang
            audit(session, at=now(), actor="flow", action="custody_reading_high",
                  case_id=case_id, step=key, over=over)
            notices.tell(session, case=case, event="custody_alert", key=f"case:{case_id}:{key}",
                         now=now(), to=notices.role_recipients(session, case, Role.CS_SUPERVISOR),
                         step_label=labels.step("movein", key.split("#")[0], lang),
                         over="；".join(f"{'水表' if m == 'water' else '电表'} {v}"
                                       for m, v in over.items()))
        return over
