"""Every complaint is reported to the superior (做好详细记录并向上级领导汇报, PROCEDURES.md
§10): the cs supervisor hears of it as it is recorded. Fast tier."""

from __future__ import annotations

from propflow import actions
from tests.flowkit import COMPLAINT
from tests.test_faithful import messages


def test_every_complaint_is_reported_to_the_cs_supervisor(demo, clock):
    responder = [p for p in demo["staff"] if p["role"] == "csr"][1]
    number = actions.open_complaint(start_run=False, **COMPLAINT | {
        "received_by": responder["id"]})["number"]
    supervisors = {p["id"] for p in demo["staff"] if p["role"] == "cs_supervisor"}
    reported = messages("staff:", "reported")
    assert {int(n.recipient.split(":")[1]) for n in reported} == supervisors
    assert all(number in n.subject and responder["name"] in n.body
               and COMPLAINT["description"] in n.body for n in reported)
