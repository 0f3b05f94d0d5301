"""VIP visit 参观接待 (PROCEDURES.md §5, §10): a countdown to the arrival, one run per visit.

Each preparation step falls due at its fixed time before the arrival, not a window from
when it opened; one missed escalates at once to the project manager (the policy's chain).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow

from core.vocabulary import Role
from flows.human import ask, rewinds, wait_for
from tasks.cases import close_case, intake, tell_role
from tasks.steps import open_step
from tasks.visit import plan_countdown, plan_restore

# Who does each preparation step a class may take (seed, §5), opened in this order;
# each is due at its own time before the arrival (the policy's countdown).
PREPARERS = {
    "briefing": Role.PROJECT_MANAGER,  # T-1 d: the manager briefs every department
    "duty_plan": Role.CS_SUPERVISOR,  # T-1 d: the 接待安排表, posts and people
    "readiness": Role.TECH_SUPERVISOR,  # T-1 d: escape routes, extinguishers, lights, lifts
    "cleaning": Role.CLEANING,  # T-½ d: meeting hall, plant rooms, corners, plants, AV
    "air_conditioning": Role.TECH_SUPERVISOR,  # T-2 h
    "supplies": Role.CSR,  # T-1 h
    "route_walk": Role.CS_SUPERVISOR,  # T-1 h: the cs supervisor walks the route
    "lift": Role.TECH_SUPERVISOR,  # T-30 min: the dedicated lift on manual
    "at_post": Role.CS_SUPERVISOR,  # T-15 min: everyone at their post
    "parking": Role.SECURITY,  # security has the plates and reserves the spaces
}


@flow(name="visit", flow_run_name="{number}", persist_result=True, log_prints=True)
@rewinds  # a step sent back or withdrawn: back through the procedure from the record
def visit(case_id: int, number: str) -> str:
    case = intake(case_id)

    # Outside office hours the project manager approves the visit first (§10).
    if case["out_of_hours"]:
        approval = ask(case_id, "approve_visit#1", "approve_visit", Role.PROJECT_MANAGER)
        if approval.lapsed or not approval.values["approved"]:
            tell_role(case_id, Role.CS_SUPERVISOR, "refused", key="refused",
                      reason=approval.text("reason"))
            close_case(case_id, "refused")
            return "refused"

    # The countdown: every step of the class at once, each due at its time before arrival.
    due = {kind: datetime.fromisoformat(at) for kind, at in plan_countdown(case_id).items()}
    tell_role(case_id, Role.PROJECT_MANAGER, "booked", key="booked",
              steps=len(due), arrival_local=case["arrival_local"])
    opened = [open_step(case_id, f"{kind}#1", kind, role, None,
                        _parking(case) if kind == "parking" else None, due[kind])
              for kind, role in PREPARERS.items() if kind in due]
    if opened:
        wait_for(opened, need="all")

    # After the visit: restore the site (its window from the arrival), review, archive.
    restore = open_step(case_id, "restore#1", "restore", Role.CLEANING, None, None,
                        datetime.fromisoformat(plan_restore(case_id)))
    wait_for([restore])
    ask(case_id, "review#1", "review", Role.PROJECT_MANAGER)
    ask(case_id, "archive#1", "archive", Role.CS_SUPERVISOR)
    close_case(case_id, "done")
    return "done"


def _parking(case: dict[str, Any]) -> dict[str, Any]:
    cars = case.get("cars") or []
    return {"duty": "来访车牌 " + "、".join(cars), "cars": cars}
