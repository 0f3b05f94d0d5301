"""A repair's progress reaches the owner hourly while work is under way, every note of the
hour merged into one message (PROCEDURES.md §10, seed 004). Fast tier: the SLA clock sends."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from core.errors import Conflict
from propflow import actions, sla
from propflow.cli import app
from tests.test_faithful import messages, open_step, repair


def test_progress_notes_reach_the_owner_merged_at_most_once_an_hour(demo, clock):
    number = repair()
    technician = demo["by_role"]["technician"]
    with pytest.raises(Conflict, match="没有进行中的维修"):  # not accepted yet: no work
        actions.repair_progress(number, technician, "已到场")
    open_step(number, "complete#1", "complete", "technician", technician)

    clock.advance(timedelta(minutes=10))  # 09:10
    actions.repair_progress(number, technician, "已到场，正在排查")
    assert sla.tick(start_pending=False).progress == 1
    clock.advance(timedelta(minutes=10))  # 09:20, 09:40: within the hour, held back
    shown = CliRunner().invoke(app, ["repair", "progress", number, "--as", str(technician),
                                     "--note", "已更换阀门", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["note"] == "已更换阀门"
    clock.advance(timedelta(minutes=20))
    actions.repair_progress(number, technician, "正在试水")
    assert sla.tick(start_pending=False).progress == 0
    clock.advance(timedelta(minutes=30))  # 10:10, an hour after the first message
    assert sla.tick(start_pending=False).progress == 1
    assert sla.tick(start_pending=False).progress == 0  # nothing new

    first, second = messages("owner:", "progress")
    assert "已到场，正在排查" in first.body and "已更换阀门" not in first.body
    assert "09:20　已更换阀门" in second.body and "09:40　正在试水" in second.body
    timeline = [t["action"] for t in actions.show_case(number)["timeline"]]
    assert timeline.count("progress") == 3


def test_a_progress_note_names_what_was_wrong(demo, clock):
    from core.errors import PropflowError

    number = repair()
    open_step(number, "complete#1", "complete", "technician", demo["by_role"]["technician"])
    with pytest.raises(PropflowError) as caught:
        actions.repair_progress(number, demo["by_role"]["technician"], "  ")
    assert caught.value.field == "note"
