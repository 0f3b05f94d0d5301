"""Emergency 应急 (PROCEDURES.md §3): minutes count, departments are called out in
parallel, and every household of the affected buildings hears at each turn."""

from __future__ import annotations

from prefect import flow

from core.vocabulary import Role
from flows.human import StepCancelled, ask, ask_all, rewinds, wait_for
from tasks.cases import close_case, intake, tell_residents, tell_role
from tasks.emergency import report_skipped_levels
from tasks.steps import cancel_steps, open_step


@flow(name="emergency", flow_run_name="{number}", persist_result=True, log_prints=True)
@rewinds  # a step sent back or withdrawn: back through the procedure from the record
def emergency(case_id: int, number: str) -> str:
    case = intake(case_id)
    if case["office_class"]:
        office_incident(case_id, case["office_class"])
    else:
        # The departments are called at the report, at the same time as the plan is started
        # (PROCEDURES.md §10): each acknowledges on its own window, in any order.
        acks = [open_step(case_id, f"acknowledge-{d['role']}#1", "acknowledge", d["role"], None,
                          {"duty": d["duty"]}) for d in case["fanout"]]
        # Start the plan within 10 minutes, around the clock; silence climbs the chain.
        acks = start_plan(case_id, acks)
        tell_residents(case_id, "activated", key="activated")
        keep_residents_informed(case_id, acks)
        # Afterwards, a check of similar hazards everywhere (事后全面检查同类隐患).
        ask(case_id, "hazard_check#1", "hazard_check", case["hazard_check"])

    # A level skipped in the emergency (越级) is told afterwards who acted in its place.
    report_skipped_levels(case_id)
    # After it ends: the incident record within 2 working days, then the company reviews it.
    ask(case_id, "incident_report#1", "incident_report", Role.CS_SUPERVISOR)
    ask(case_id, "training_review#1", "training_review", Role.COMPANY_CS)
    close_case(case_id, "resolved")
    return "resolved"


def start_plan(case_id: int, acks: list[int]) -> list[int]:
    """Wait for the plan to be started while the departments acknowledge (their lapses are
    escalated meanwhile); returns the acknowledgements still waiting."""
    activate = open_step(case_id, "activate#1", "activate", Role.CS_SUPERVISOR, None)
    pending = [activate, *acks]
    while True:
        for step_id, outcome in wait_for(pending, need="any").items():
            pending.remove(step_id)
            if step_id == activate:
                if outcome.cancelled:
                    raise StepCancelled(f"step activate#1 of case {case_id} was cancelled")
                return pending


def keep_residents_informed(case_id: int, acks: list[int]) -> None:
    """Until resolved, an update falls due every N minutes; each one reaches the residents.

    Settled steps are taken one by one in the order the record settled them, so a replay
    stops at the resolve exactly as the first pass did: the update it cancelled is not news.
    """
    n = 1
    update = open_step(case_id, f"update#{n}", "update", Role.CS_SUPERVISOR, None)
    resolve = open_step(case_id, "resolve#1", "resolve", Role.CS_SUPERVISOR, None)
    pending = [*acks, update, resolve]
    while True:
        for step_id, outcome in wait_for(pending, need="any").items():
            pending.remove(step_id)
            if step_id == resolve:
                cancel_steps(pending, "incident resolved")
                tell_residents(case_id, "resolved", key="resolved",
                               summary=outcome.values["summary"])
                return
            if step_id == update and not outcome.cancelled:
                if outcome.decided:  # an update expired by policy has nothing to say
                    tell_residents(case_id, "update", key=f"update#{n}",
                                   message=outcome.values["message"])
                n += 1
                update = open_step(case_id, f"update#{n}", "update", Role.CS_SUPERVISOR, None)
                pending.append(update)


def office_incident(case_id: int, office_class: str) -> None:
    """Office-area incidents at the management office, by class (PROCEDURES.md §10): the
    visitors are taken to the set reception area; front-line staff answer nothing."""
    if office_class == "A":  # an owner's agitated visit: the 客服主任 and 管理处主任 come
        came = ask_all(case_id, [
            ("receive#1", "receive", Role.CSR),
            ("acknowledge-cs_director#1", "acknowledge", Role.CS_DIRECTOR),
            ("acknowledge-project_manager#1", "acknowledge", Role.PROJECT_MANAGER)])
        if came["receive#1"].flag("media_present"):  # media present: they handle it
            ask(case_id, "handle#1", "handle", Role.PROJECT_MANAGER)
    elif office_class == "B":  # an agitated (former) employee: the front desk answers first
        received = ask(case_id, "receive#1", "receive", Role.CSR)
        if not received.flag("contained", default=True):  # HR only if it cannot be contained
            ask(case_id, "handle#1", "handle", Role.HR)
    else:  # media or officials: the manager first, who tells PR; the leader above is told
        tell_role(case_id, Role.CSR, "hold_answers", key="hold_answers")
        tell_role(case_id, Role.COMPANY_CS, "office_reported", key="office_reported")
        ask(case_id, "acknowledge-project_manager#1", "acknowledge", Role.PROJECT_MANAGER)
        ask(case_id, "acknowledge-pr#1", "acknowledge", Role.PR)
    ask(case_id, "resolve#1", "resolve", Role.CS_SUPERVISOR)
