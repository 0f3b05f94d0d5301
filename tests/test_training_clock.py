"""Training mode (情景模拟): a new simulated clock starts at 09:00 on a working day, whatever
the hour the trainee begins, and `clock advance --to-next-due` lapses the next step, so the
README walkthrough reads the same at 22:00 as at 10:00. The "real" time is injected."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from core import clock as clock_module
from models import steps
from models.cases import Case, Step
from models.db import unit_of_work
from propflow import actions as service
from propflow.cli import app as cli
from tests.conftest import SHANGHAI

runner = CliRunner()


@pytest.fixture
def training(training_mode):  # type: ignore[no-untyped-def]
    return training_mode


def cli_json(*args: str) -> dict:
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout)


def refused(*args: str) -> dict:
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stderr)


@pytest.mark.parametrize(("real", "starts"), [
    ((2026, 11, 27, 22, 0), "2026-11-30 09:00"),  # Friday night: Monday morning
    ((2026, 11, 24, 7, 30), "2026-11-24 09:00"),  # a working morning before nine: today
    ((2026, 11, 24, 10, 0), "2026-11-25 09:00"),  # during the working day: tomorrow
    ((2026, 9, 30, 18, 0), "2026-10-08 09:00"),   # the eve of National Day: after the holiday
    ((2026, 10, 9, 22, 0), "2026-10-10 09:00"),   # Saturday 10 October is a make-up workday
])
def test_a_new_training_clock_starts_at_nine_on_the_next_working_day(training, real, starts):
    training(*real)
    shown = cli_json("clock", "show")
    assert shown["mode"] == "training"
    assert shown["now"] == starts


def test_the_walkthrough_escalates_at_ten_at_night(training, demo):
    """The README: open a repair, its accept is due in 30 working minutes, `clock advance 1h`
    escalates it to the 客服主管 — begun at 22:00 on a Friday."""
    training(2026, 11, 27, 22, 0)
    case = cli_json("repair", "open", "--unit", "1-2-301", "--category", "public_area",
                    "--priority", "medium", "--reporter", "张三", "--phone", "13800138000",
                    "--description", "楼道灯不亮")
    step_id = open_accept(case["number"], demo["by_role"]["technician"])
    assert service.show_step(step_id)["due_at"] == "2026-11-30 09:30"

    moved = cli_json("clock", "advance", "1h")
    assert moved["now"] == "2026-11-30 10:00"
    assert moved["lapsed"] == 1
    row = service.show_step(step_id)
    assert (row["level"], row["role"]) == (1, "cs_supervisor")


def test_to_next_due_moves_just_past_the_earliest_due_step(training, demo):
    training(2026, 11, 27, 22, 0)
    first = service.open_repair(start_run=False, unit="1-2-301", category="public_area",
                                priority="medium", reporter="张三", phone="13800138000",
                                description="楼道灯不亮")
    later = service.open_repair(start_run=False, unit="2-1-201", category="civil",
                                priority="low", reporter="李四", phone="13900139000",
                                description="墙面开裂")
    soon = open_accept(first["number"], demo["by_role"]["technician"])
    open_accept(later["number"], demo["by_role"]["technician"])  # due later: low priority
    assert service.show_step(soon)["due_at"] == "2026-11-30 09:30"

    moved = cli_json("clock", "advance", "--to-next-due")
    assert moved["past_due_step"] == soon
    assert moved["lapsed"] == 1
    assert clock_module.now() == datetime(2026, 11, 30, 9, 30, 1, tzinfo=SHANGHAI)
    # Escalated, the step has a new due time at the supervisor's level: the next one.
    again = cli_json("clock", "advance", "--to-next-due")
    assert again["lapsed"] >= 1
    assert clock_module.now() > datetime(2026, 11, 30, 9, 30, 1, tzinfo=SHANGHAI)


def test_to_next_due_with_nothing_waiting_is_refused(training):
    training(2026, 11, 27, 22, 0)
    before = cli_json("clock", "show")["now"]
    error = refused("clock", "advance", "--to-next-due")
    assert error["field"] == "to-next-due" and "expected a waiting step" in error["message"]
    assert cli_json("clock", "show")["now"] == before


def test_a_duration_or_to_next_due_not_both(training):
    training(2026, 11, 27, 22, 0)
    for args in (["clock", "advance"], ["clock", "advance", "1h", "--to-next-due"]):
        error = refused(*args)
        assert error["field"] == "delta" and "--to-next-due" in error["message"]


def test_to_next_due_in_normal_mode_is_refused(demo, monkeypatch):
    clock_module.set_clock(None)  # the real clock, as in production
    error = refused("clock", "advance", "--to-next-due")
    assert error["error"] == "forbidden" and error["field"] == "PROPFLOW_MODE"


def open_accept(number: str, technician: int) -> int:
    """The step the repair's run opens first (its run is not needed to test the clock)."""
    with unit_of_work() as session:
        case = session.scalars(select(Case).where(Case.number == number)).one()
        step: Step = steps.open_step(session, case=case, key="accept#1", kind="accept",
                                     role="technician", now=clock_module.now(),
                                     assignee_id=technician)
        return step.id


def test_the_clock_only_moves_forward_after_it_started(training):
    """Starting at the next working morning is not a licence to move back later."""
    training(2026, 11, 27, 22, 0)
    start = cli_json("clock", "show")["now"]
    training(2026, 12, 1, 22, 0)  # the real time moves on: the simulated one does not follow
    assert cli_json("clock", "show")["now"] == start
    assert cli_json("clock", "advance", "30m")["now"] == "2026-11-30 09:30"
