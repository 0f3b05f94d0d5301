"""Reception day 接访日 (PROCEDURES.md §6): one run per visitor's matter; and, on the
deployment's daily schedule (core/procedures.py), a run with no case that tells residents
a week before each month's reception day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prefect import flow

from core.vocabulary import Role
from flows.human import StepCancelled, ask, rewinds, wait_for
from flows.outcome import StepOutcome
from tasks.cases import close_case, intake, tell_reporter
from tasks.reception import announce_reception_days, set_handler
from tasks.steps import open_step

SCHEDULED = "接访日通知"  # the name of a scheduled run: it has no case


@flow(name="reception", flow_run_name="{number}", persist_result=True, log_prints=True)
@rewinds  # a step sent back or withdrawn: back through the procedure from the record
def reception(case_id: int = 0, number: str = SCHEDULED) -> str:
    if not case_id:  # the schedule: residents told a week before the day
        told = announce_reception_days()
        return f"announced {len(told)}"
    case = intake(case_id)

    # Signed off by customer service, the responsible department and the supervisor, in
    # turn, before the receiving manager accepts it (seed).
    for outcome in _signoffs(case_id, case["department_role"]):
        if outcome.lapsed or not outcome.values.get("approved"):
            return _decline(case_id, outcome.text("reason") or "签批未通过")
    accepted = ask(case_id, "accept#1", "accept", Role.PROJECT_MANAGER)
    if accepted.lapsed or not accepted.values["accepted"]:
        return _decline(case_id, accepted.text("reason") or "未受理")
    handler = set_handler(case_id, accepted.values["department"], accepted.values["deadline"])
    tell_reporter(case_id, "accepted", key="accepted", opinion=accepted.text("opinion"),
                  deadline=accepted.values["deadline"])

    # Handled by its deadline; the result goes back to the visitor; followed up until done.
    round_ = 0
    while True:
        round_ += 1
        step = open_step(case_id, f"handle#{round_}", "handle", handler["role"], None, None,
                         datetime.fromisoformat(handler["due"]))
        done = wait_for([step])[step]
        if done.cancelled:
            raise StepCancelled(f"handle#{round_} of case {case_id} was cancelled")
        tell_reporter(case_id, "result", key=f"result#{round_}", result=done.text("result"),
                      done=bool(done.values.get("done")))
        check = ask(case_id, f"follow_up#{round_}", "follow_up", Role.CS_SUPERVISOR)
        if check.values.get("done"):
            break
        handler = set_handler(case_id, accepted.values["department"],
                              check.values["new_deadline"])

    ask(case_id, "satisfaction#1", "satisfaction", Role.CSR)  # a satisfaction check (seed)
    close_case(case_id, "done")
    return "done"


def _signoffs(case_id: int, department: str) -> Iterator[StepOutcome]:
    """Each sign-off, asked only once the one before it agreed."""
    yield ask(case_id, "signoff_cs#1", "signoff_cs", Role.CS_SUPERVISOR)
    yield ask(case_id, "signoff_department#1", "signoff_department", department)
    yield ask(case_id, "signoff_supervisor#1", "signoff_supervisor", Role.CS_DIRECTOR)


def _decline(case_id: int, reason: str) -> str:
    tell_reporter(case_id, "declined", key="declined", reason=reason)
    close_case(case_id, "declined")
    return "declined"
