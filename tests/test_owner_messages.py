"""Owners get owner messages, never a staff to-do; the front desk is told at once when an
owner's step opens, to record an answer given by phone (PROCEDURES.md §10). Fast tier."""

from __future__ import annotations

from datetime import timedelta

from propflow import sla
from tests.test_faithful import messages, open_step, repair

# --- owners ----------------------------------------------------------------------------------

def test_an_owner_gets_an_owner_message_and_the_front_desk_is_told_at_once(demo, clock):
    number = repair()
    step = open_step(number, "owner_acceptance#1", "owner_acceptance", "owner")
    [owner] = messages("owner:", "step_opened")
    assert "待办" not in owner.subject and "请您答复" in owner.subject
    assert "propflow steps decide" not in owner.body and "/o/" in owner.body
    desks = {p["id"] for p in demo["staff"] if p["role"] == "csr"}
    told = messages("staff:", "step_opened")
    assert {int(n.recipient.split(":")[1]) for n in told} == desks
    assert all("待业主答复" in n.subject and f"steps decide {step['id']}" in n.body
               for n in told)
    # Nearing its due time, the desk is warned (to phone the owner), the owner is not.
    clock.advance(timedelta(hours=20))
    assert sla.tick(start_pending=False).warned == 1
    assert not messages("owner:", "warning")
    assert {int(n.recipient.split(":")[1]) for n in messages("staff:", "warning")} == desks
