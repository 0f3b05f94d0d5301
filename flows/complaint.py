"""Complaint 投诉 (PROCEDURES.md §2): one flow run per complaint, named after its number.

The first responder (首问责任人) owns it to the end: they acknowledge it, give the result
back to the complainant, are copied on every lapse, and their name is on every message.
"""

from __future__ import annotations

from prefect import flow

from core.vocabulary import Role
from flows.human import ask, rewinds
from models.complaint import investigator, needs_approval, reply_by
from tasks.cases import close_case, intake, tell_reporter


@flow(name="complaint", flow_run_name="{number}", persist_result=True, log_prints=True)
@rewinds  # a step sent back or withdrawn: back through the procedure from the record
def complaint(case_id: int, number: str) -> str:
    case = intake(case_id)
    responder = case["first_responder"]

    # Receive and acknowledge: calm the person first, never argue, never promise lightly.
    # The complainant is told when to expect the reply (应告知回复时间).
    acknowledged = ask(case_id, "acknowledge#1", "acknowledge", Role.CSR, responder)
    promised = reply_by(acknowledged.settled_at)
    tell_reporter(case_id, "acknowledged", key="acknowledged", reply_by=promised)

    level, round_ = 0, 0
    while True:
        round_ += 1
        # Investigate with the responsible department (one level up after each refusal).
        role = investigator(case["department"], level)
        plan = ask(case_id, f"investigate#{round_}", "investigate", role)

        # A compensation (above the policy's threshold) or an exception needs the project
        # manager; refused: plan again.
        if needs_approval(plan.values):
            # Whoever proposed it may not approve it: the step names what it approves.
            approval = ask(case_id, f"approve_resolution#{round_}", "approve_resolution",
                           Role.PROJECT_MANAGER, context={"approves": f"investigate#{round_}"})
            if not approval.values["approved"]:
                continue

        # Not solved at once: the complainant hears how it stands and what comes next.
        tell_reporter(case_id, "progress", key=f"progress#{round_}", reply_by=promised,
                      resolution=plan.values["proposed_resolution"], reopened=round_ > 1)

        # Carry it out, then the first responder gives the result back (seed: always).
        result = ask(case_id, f"resolve#{round_}", "resolve", role)
        tell_reporter(case_id, "result", key=f"result#{round_}", result=result.values["result"],
                      resolution=plan.values["proposed_resolution"],
                      compensation=plan.text("compensation") or "0")
        feedback = ask(case_id, f"feedback#{round_}", "feedback", Role.CSR, responder)
        if feedback.values["accepted"]:
            break
        level += 1  # not accepted: reinvestigated one level up the chain

    # Callback and satisfaction; no answer, or not reached: the front desk phones.
    callback = ask(case_id, "callback#1", "callback", Role.OWNER)
    if callback.lapsed or not callback.flag("reached", default=True):
        ask(case_id, "phone_callback#1", "phone_callback", Role.CSR)

    close_case(case_id, "resolved")
    return "resolved"
