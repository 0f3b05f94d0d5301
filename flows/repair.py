"""Repair 报修 (PROCEDURES.md §1): one flow run per work order, named after its number."""

from __future__ import annotations

from prefect import flow

from core.vocabulary import Role
from flows.human import ask, rewinds
from models.complaint import opens_complaint
from models.notices import local as local_time
from models.repair import rating_due
from tasks.cases import close_case, intake, tell_reporter
from tasks.repair import assign, auto_dispatch, complain_about
from tasks.steps import open_step


@flow(name="repair", flow_run_name="{number}", persist_result=True, log_prints=True)
@rewinds  # a step sent back or withdrawn: back through the procedure from the record
def repair(case_id: int, number: str) -> str:
    # 1-2. Intake: the case is already recorded, numbered and classified; link this run.
    case = intake(case_id)

    # 3. Dispatch: by skill and load, else a technical supervisor assigns it.
    technician = auto_dispatch(case_id)
    if technician is None:
        technician = ask(case_id, "dispatch#1", "dispatch", Role.TECH_SUPERVISOR).values[
            "technician"]

    # 4. The technician accepts; a supervisor deciding instead may hand it to someone else.
    attempt = 0
    while True:
        attempt += 1
        technician_name = assign(case_id, technician, attempt)
        accepted = ask(case_id, f"accept#{attempt}", "accept", Role.TECHNICIAN, technician)
        reassign_to = accepted.number("reassign_to")
        if reassign_to is None:
            break
        technician = reassign_to
    tell_reporter(case_id, "accepted", key="accepted", technician=technician_name,
                  eta=accepted.text("eta"))

    # A paid repair starts only once the owner accepts the quote.
    if case["paid"]:
        quote = ask(case_id, "quote#1", "quote", Role.OWNER)
        if quote.lapsed or not quote.values["accepted"]:
            close_case(case_id, "quote_refused")
            return "quote_refused"

    # 5-6. Work, completion, owner acceptance; a disputed result is re-inspected in 48 h.
    # The completion notice asks for the rating too (PROCEDURES.md §10).
    round_ = 0
    while True:
        round_ += 1
        done = ask(case_id, f"complete#{round_}", "complete", Role.TECHNICIAN, technician)
        tell_reporter(case_id, "completed", key=f"completed#{round_}",
                      diagnosis=done.text("diagnosis"), charge=done.text("charge"),
                      rate_by=local_time(rating_due(done.settled_at)))
        verdict = ask(case_id, f"owner_acceptance#{round_}", "owner_acceptance", Role.OWNER)
        if verdict.values["accepted"]:
            break
        tell_reporter(case_id, "reinspection", key=f"reinspection#{round_}")
        finding = ask(case_id, f"reinspection#{round_}", "reinspection", Role.TECH_SUPERVISOR)
        if not finding.values["redo"]:
            break

    # 7. The rating's 24 h run from completion, however long the acceptance took; no answer,
    # or not reached: the front desk phones the owner.
    open_step(case_id, "callback#1", "callback", Role.OWNER, None, None,
              rating_due(done.settled_at))
    callback = ask(case_id, "callback#1", "callback", Role.OWNER)
    if callback.lapsed or not callback.flag("reached", default=True):
        callback = ask(case_id, "phone_callback#1", "phone_callback", Role.CSR)

    # A low rating is a complaint in all but name (the policy says how low): it opens one.
    rating = callback.number("rating")
    if rating is not None and opens_complaint(rating):
        complain_about(case_id, rating, callback.text("comment"), callback.decided_by)

    close_case(case_id, "done")
    return "done"

