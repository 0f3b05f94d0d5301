"""VIP visit 参观接待 (PROCEDURES.md §5, §10): a countdown to the arrival, one run per visit.

Each preparation step falls due at its fixed time before the arrival, not a window from
when it opened; one missed escalates at once to the project manager (the policy's chain).
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow

from core.vocabulary import Role
from flows.human import ask, rewinds, wait_for
from tasks.cases import close_case, intake, tell_role
from tasks.steps import open_step
from tasks.visit import plan_countdown, plan_restore


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
    opened: list[int] = []
    if "briefing" in due:  # T-1 d: the manager briefs every department
        opened.append(open_step(case_id, "briefing#1", "briefing", Role.PROJECT_MANAGER, None,
                                None, due["briefing"]))
    if "duty_plan" in due:  # T-1 d: the 接待安排表, posts and people
        opened.append(open_step(case_id, "duty_plan#1", "duty_plan", Role.CS_SUPERVISOR, None,
                                None, due["duty_plan"]))
    if "readiness" in due:  # T-1 d: escape routes, extinguishers, lights, lifts
        opened.append(open_step(case_id, "readiness#1", "readiness", Role.TECH_SUPERVISOR,
                                None, None, due["readiness"]))
    if "cleaning" in due:  # T-½ d: meeting hall, plant rooms, corners, plants, AV
        opened.append(open_step(case_id, "cleaning#1", "cleaning", Role.CLEANING, None, None,
                                due["cleaning"]))
    if "air_conditioning" in due:  # T-2 h
        opened.append(open_step(case_id, "air_conditioning#1", "air_conditioning",
                                Role.TECH_SUPERVISOR, None, None, due["air_conditioning"]))
    if "supplies" in due:  # T-1 h
        opened.append(open_step(case_id, "supplies#1", "supplies", Role.CSR, None, None,
                                due["supplies"]))
    if "route_walk" in due:  # T-1 h: the cs supervisor walks the route with the management
        opened.append(open_step(case_id, "route_walk#1", "route_walk", Role.CS_SUPERVISOR,
                                None, None, due["route_walk"]))
    if "lift" in due:  # T-30 min: the dedicated lift on manual
        opened.append(open_step(case_id, "lift#1", "lift", Role.TECH_SUPERVISOR, None, None,
                                due["lift"]))
    if "at_post" in due:  # T-15 min: everyone at their post
        opened.append(open_step(case_id, "at_post#1", "at_post", Role.CS_SUPERVISOR, None,
                                None, due["at_post"]))
    if "parking" in due:  # security has the plates and reserves the spaces
        opened.append(open_step(case_id, "parking#1", "parking", Role.SECURITY, None,
                                {"duty": "来访车牌 " + "、".join(case.get("cars") or []),
                                 "cars": case.get("cars") or []}, due["parking"]))
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
