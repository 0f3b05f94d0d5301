"""Move-in 入住 (PROCEDURES.md §4, §10): one flow run per move-in, named after its number.

Documents per buyer type, agreements, fees, keys against a signed receipt; the joint
inspection, each defect a linked repair; once they are all closed a re-inspection, then the
owner signs off. In custody (托管) the steward reads the meters at the custody hand-over and
checks the exterior weekly (and before and after heavy rain) until custody ends.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from core.vocabulary import Role
from flows.human import ask, rewinds, wait_for
from models import movein as rules
from tasks.cases import close_case, intake, tell_reporter
from tasks.movein import custody_readings, fee, note_missing, open_defect_repairs
from tasks.steps import cancel_steps, open_step


@flow(name="movein", flow_run_name="{number}", persist_result=True, log_prints=True)
@rewinds  # a step sent back or withdrawn: back through the procedure from the record
def movein(case_id: int, number: str) -> str:
    case = intake(case_id)
    buyer, custody = case["buyer"], bool(case["custody"])

    # 1. Documents per buyer type (frozen at intake); anything missing is asked for again.
    n = 0
    lacking: list[str] = []  # what the last round lacked: the next one's duty says so
    while True:
        n += 1
        docs = ask(case_id, f"documents#{n}", "documents", Role.CSR,
                   context={"duty": rules.document_duty(case["documents"], buyer, lacking)})
        lacking = rules.missing(case["documents"], docs.values.get("documents", []))
        if not lacking:
            break
        note_missing(case_id, "documents", f"documents#{n}", lacking)
    area = docs.text("area")

    # 2. Agreements: registration, decoration application, service and decoration
    # agreements, temporary rules, the documents receipt (and custody's own).
    n, lacking = 0, []
    while True:
        n += 1
        signed = ask(case_id, f"agreements#{n}", "agreements", Role.CSR,
                     context={"duty": rules.agreement_duty(case["agreements"], lacking)})
        lacking = rules.missing(case["agreements"], signed.values.get("signed", []))
        if not lacking:
            break
        note_missing(case_id, "agreements", f"agreements#{n}", lacking)

    # 3. Fees at the policy's rates (in custody at its share).
    due = fee(case_id, area)
    n = 0
    while not ask(case_id, f"fees#{n + 1}", "fees", Role.CSR,
                  context={"duty": f"收取 {due['text']}"}).flag("paid"):
        n += 1

    # 4. Keys, handbook and diagrams, against the owner's signed receipt.
    n = 0
    while not ask(case_id, f"handover#{n + 1}", "handover", Role.CSR,
                  context={"duty": "交付钥匙、住户手册、水电图、装修须知，业主签收"}
                  ).flag("receipt_signed"):
        n += 1
    tell_reporter(case_id, "handed_over", key="handed_over", fee=due["total"])

    # 5. Joint inspection, room by room; every defect becomes a linked repair.
    found = ask(case_id, "inspection#1", "inspection", Role.TECHNICIAN,
                context={"duty": f"与业主联合验收并抄水电气表：{rules.checklist()}"}
                ).values.get("defects", [])
    rounds, offers = 0, 0
    while True:
        while found:
            rounds += 1
            found = repair_round(case_id, rounds, found)
        offers += 1
        verdict = ask(case_id, f"sign_off#{offers}", "sign_off", Role.OWNER)
        if verdict.flag("accepted"):
            break
        # Refused: what the owner objects to is re-inspected, and repaired if it is a defect.
        rounds += 1
        objection = {"duty": f"业主未签收：{verdict.text('reason')}"}
        found = ask(case_id, f"reinspection#{rounds}", "reinspection", Role.TECH_SUPERVISOR,
                    context=objection).values.get("defects", [])

    # 6. Custody: meters at the hand-over, then the recurring exterior checks.
    if custody:
        in_custody(case_id)

    close_case(case_id, "moved_in")
    return "moved_in"


def repair_round(case_id: int, round_: int, defects: list[dict[str, Any]]) -> list[Any]:
    """Open the round's repairs, wait until all are closed, re-inspect: what is still wrong."""
    repairs = open_defect_repairs(case_id, round_, defects)
    tell_reporter(case_id, "defects", key=f"defects#{round_}", repairs="、".join(repairs),
                  count=len(repairs))
    # Settled by the close of the last linked repair (or by the supervisor, who may).
    ask(case_id, f"rectification#{round_}", "rectification", Role.TECH_SUPERVISOR)
    tell_reporter(case_id, "reinspection", key=f"reinspection#{round_}")
    again = ask(case_id, f"reinspection#{round_}", "reinspection", Role.TECH_SUPERVISOR,
                context={"duty": f"复验整改：{'、'.join(repairs)}"})
    result: list[Any] = again.values.get("defects", [])
    return result


def in_custody(case_id: int) -> None:
    """Until a custody_end decision, a custody check falls due every week (its window); one
    missed escalates. Settled steps are taken in the order the record settled them, so a
    replay stops where the first pass did."""
    start = ask(case_id, "custody_start#1", "custody_start", Role.STEWARD,
                context={"duty": rules.custody_duty()})
    custody_readings(case_id, "custody_start#1", start.text("water"), start.text("electricity"))
    end = open_step(case_id, "custody_end#1", "custody_end", Role.CSR, None,
                    {"duty": "业主收房、托管结束时登记"})
    n = 1
    check = _custody_check(case_id, n)
    pending = [check, end]
    while True:
        for step_id, outcome in wait_for(pending, need="any").items():
            pending.remove(step_id)
            if step_id == end:
                cancel_steps(pending, "custody ended")
                return
            if outcome.decided:
                custody_readings(case_id, outcome.key, outcome.text("water"),
                                 outcome.text("electricity"))
            n += 1
            check = _custody_check(case_id, n)
            pending.append(check)


def _custody_check(case_id: int, n: int) -> int:
    step_id: int = open_step(case_id, f"custody_check#{n}", "custody_check", Role.STEWARD, None,
                     {"duty": "托管巡查：门窗、外墙、阳台、排水，抄水电表；每周一次，"
                              "大雨前后各加一次（occasion=before_rain/after_rain）"})
    return step_id
