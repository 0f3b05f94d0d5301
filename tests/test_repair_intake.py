"""A repair's first responder (`--received-by`, 首问责任制) and the owner's convenient visit
time (`--preferred-time`, 方便维修的时间), PROCEDURES.md §10. Fast tier."""

from __future__ import annotations

from datetime import timedelta

from propflow import actions, sla
from tests.test_faithful import messages, open_step, repair


def test_the_receiver_owns_the_repair_and_the_technician_sees_the_preferred_time(demo, clock):
    receiver = [p for p in demo["staff"] if p["role"] == "csr"][1]
    number = repair(received_by=receiver["id"], preferred_time="工作日18:00后")
    shown = actions.show_case(number)
    assert shown["first_responder"] == receiver["id"]
    assert shown["details"]["preferred_time"] == "工作日18:00后"
    [received] = messages("owner:", "received")
    assert receiver["name"] in received.body and "工作日18:00后" in received.body

    technician = demo["by_role"]["technician"]
    open_step(number, "accept#1", "accept", "technician", technician)
    [todo] = messages(f"staff:{technician}", "step_opened")
    assert "方便上门时间：工作日18:00后" in todo.body
    # Whatever goes wrong with it reaches the first responder too.
    clock.advance(timedelta(minutes=25))
    assert sla.tick(start_pending=False).warned == 1
    assert messages(f"staff:{receiver['id']}", "warning")


def test_without_a_receiver_nobody_is_copied_besides_the_assignee(demo, clock):
    number = repair()
    assert actions.show_case(number)["first_responder"] is None
    assert actions.show_case(number)["details"]["preferred_time"] is None
