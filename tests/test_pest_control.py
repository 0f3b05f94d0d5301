"""Pest control 消杀 (PROCEDURES.md §7: monthly, "notice in every lobby two days before"): a plan
of the policy whose rounds are the cleaning team's, and every household told two days before
each firing, once, by the daily round_notice duty or the training clock."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from core.policy import get_policy
from models import inspection
from models.db import unit_of_work
from models.org import Resident
from models.outbox import AuditEvent, Notification
from propflow.cli import app
from tasks.round_notice import announce_round_notices
from tests.conftest import SHANGHAI
from tests.flowkit import CaseRun

runner = CliRunner()


def households() -> int:
    with unit_of_work(write=False) as session:
        return session.scalar(select(func.count()).select_from(Resident)) or 0


def resident_rows(event: str) -> list[Notification]:
    with unit_of_work(write=False) as session:
        return list(session.scalars(select(Notification).where(
            Notification.event == event, Notification.recipient.like("resident:%"))))


def test_the_plan_is_monthly_for_the_cleaning_team_with_a_notice_two_days_before():
    plan = get_policy().procedures["inspection"].plans["pest_control"]
    assert (plan.covers, plan.role, plan.per) == ("pest_control", "cleaning", "community")
    assert plan.notice == timedelta(days=2)
    fired = inspection.fire_times(get_policy(), "pest_control",
                                  datetime(2026, 11, 30, tzinfo=SHANGHAI),
                                  datetime(2027, 3, 1, tzinfo=SHANGHAI))
    assert [f.astimezone(SHANGHAI) for f in fired] == [
        datetime(2026, 12, 15, 9, 0, tzinfo=SHANGHAI), datetime(2027, 1, 15, 9, 0, tzinfo=SHANGHAI),
        datetime(2027, 2, 15, 9, 0, tzinfo=SHANGHAI)]


def test_every_household_is_told_exactly_two_days_before_once(demo, clock):
    # 24 November: the 15 November firing is past, 15 December's notice day is the 13th.
    assert announce_round_notices() == []
    clock.advance(datetime(2026, 12, 12, 23, 59, tzinfo=SHANGHAI) - clock.now())
    assert announce_round_notices() == []  # three days before: not yet
    clock.advance(datetime(2026, 12, 13, 8, 0, tzinfo=SHANGHAI) - clock.now())
    (told,) = announce_round_notices()
    assert told == {"plan": "pest_control", "community": "YGHY", "day": "2026-12-15",
                    "households": households()}
    assert households() > 0
    assert announce_round_notices() == []  # the daily duty again, the same day
    clock.advance(timedelta(days=1))
    assert announce_round_notices() == []  # the day before: told already
    rows = resident_rows("pest_notice")
    assert len(rows) == households() == len({r.recipient for r in rows})
    name = demo["community"]["name"]
    assert rows[0].subject == f"【消杀通知】2026-12-15 09:00-17:30 {name}开展消杀"
    assert "关好门窗" in rows[0].body and "大堂" in rows[0].body
    with unit_of_work(write=False) as session:
        audited = session.scalars(select(AuditEvent.detail).where(
            AuditEvent.action == "round_notice_sent")).all()
    assert [(a["community"], a["day"]) for a in audited] == [("YGHY", "2026-12-15")]
    clock.advance(timedelta(days=2))  # the 16th: a firing past is not announced late
    assert announce_round_notices() == []


class RoundRun(CaseRun):
    procedure = "inspection"


@pytest.mark.usefixtures("prefect_api")
def test_the_pest_control_round_is_the_cleaning_teams_work(demo, clock):
    cleaner = demo["by_role"]["cleaning"]
    policy = get_policy()
    fire = datetime(2026, 12, 15, 9, 0, tzinfo=SHANGHAI)
    with unit_of_work(write=False) as session:
        due = inspection.due_rounds(session, policy, fire - timedelta(minutes=1), fire,
                                    ["pest_control"])
    assert [(d.plan, d.area) for d in due] == [("pest_control", "all")]  # one per community

    run = RoundRun(demo, clock, plan="pest_control")
    steps = [run.step(f"checkpoint#{key}") for key in ("drains", "refuse", "grounds")]
    assert {(s["role"], s["assignee"]) for s in steps} == {("cleaning", cleaner)}
    run.decide("checkpoint#drains", "cleaning")
    run.decide("checkpoint#refuse", "cleaning")
    run.decide("checkpoint#grounds", "cleaning", not_ok="鼠饵站检查补药",
               note="车库 B2 鼠饵站缺药，已补")
    assert run.finish() == "done"
    assert run.show()["status"] == "closed"


@pytest.mark.usefixtures("prefect_api")
def test_the_daily_duty_run_tells_households_once(demo, clock):
    from flows.round_notice import round_notice

    clock.advance(datetime(2026, 12, 13, 8, 0, tzinfo=SHANGHAI) - clock.now())
    assert round_notice() == "announced 1"
    assert round_notice() == "announced 0"
    assert len(resident_rows("pest_notice")) == households()


@pytest.fixture
def training(training_mode):  # type: ignore[no-untyped-def]
    """Training mode, Prefect away; the real time is an evening in December."""
    training_mode(2026, 12, 10, 22, 0)


def cli(*args: str) -> dict:
    done = runner.invoke(app, [*args, "--json"])
    assert done.exit_code == 0, (done.stdout, done.stderr, done.exception)
    return dict(json.loads(done.stdout))


def test_advancing_the_training_clock_past_the_notice_day_tells_households(training):
    assert cli("clock", "show")["now"] == "2026-12-11 09:00"
    assert "notices" not in cli("clock", "advance", "1d")  # the 12th
    moved = cli("clock", "advance", "1d")  # the 13th, two days before
    assert moved["notices"] == ["YGHY pest_control 2026-12-15"]
    assert "notices" not in cli("clock", "advance", "1d")
    assert len(resident_rows("pest_notice")) == households()
    moved = cli("clock", "advance", "2d")  # past 15 December 09:00: the round itself
    assert moved["rounds"] >= 1
    with unit_of_work(write=False) as session:
        pest = session.scalars(select(inspection.InspectionRound).where(
            inspection.InspectionRound.plan == "pest_control")).all()
    assert [r.fire_at for r in pest] == [datetime(2026, 12, 15, 9, 0, tzinfo=SHANGHAI)]
