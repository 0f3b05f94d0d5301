"""Levels may be skipped in an emergency, but whoever was skipped is told afterwards
(特殊紧急情况可越级进行，但事后应向上级汇报, PROCEDURES.md §10). Fast tier."""

from __future__ import annotations

import pytest

from core.clock import now
from core.errors import Forbidden
from models import directory, emergency
from models.db import unit_of_work
from propflow import actions
from tests.flowkit import EMERGENCY
from tests.test_faithful import messages, open_step, repair


def test_the_manager_may_start_the_plan_at_once_and_the_supervisor_hears_afterwards(demo, clock):
    number = actions.report_emergency(start_run=False, **EMERGENCY)["number"]
    activate = open_step(number, "activate#1", "activate", "cs_supervisor")
    manager = demo["by_role"]["project_manager"]
    actions.decide(activate["id"], manager, {"note": "我在现场，已启动预案"})
    shown = actions.show_case(number)
    assert shown["steps"][0]["decision"]["by"] == manager
    assert not messages("staff:", "skipped")  # told after the incident, not during it

    with unit_of_work() as session:
        assert emergency.report_skipped_levels(session, directory.case(session, number),
                                               now()) == 1
    supervisors = {p["id"] for p in demo["staff"] if p["role"] == "cs_supervisor"}
    told = messages("staff:", "skipped")
    assert {int(n.recipient.split(":")[1]) for n in told} == supervisors
    assert "越级" in told[0].subject and "启动应急预案" in told[0].body


def test_outside_an_emergency_a_level_above_waits_for_the_escalation(demo, clock):
    number = repair()
    accept = open_step(number, "accept#1", "accept", "technician", demo["by_role"]["technician"])
    with pytest.raises(Forbidden, match="规则（chain）"):
        actions.decide(accept["id"], demo["by_role"]["project_manager"], {})
