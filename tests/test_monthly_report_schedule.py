"""The monthly report's scheduled deployment (issue 10): on the 1st, last month's report of
each community is written and its project manager told, once; the deployment's next run is
created for the 1st at 08:00 in Shanghai as `propflow serve` does for every schedule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from core import clock as clock_module
from core.settings import reset_settings
from models.db import unit_of_work
from models.outbox import AuditEvent, Notification
from propflow import deployments
from propflow.cli import app
from tests import monthkit

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_the_schedule_is_in_prefect_yaml_on_the_first_in_shanghai_time() -> None:
    found = {d["name"]: d for d in yaml.safe_load(deployments.render())["deployments"]}
    assert found["monthly_report"]["entrypoint"] == "flows/monthly_report.py:monthly_report"
    assert found["monthly_report"]["schedules"] == [{"cron": "0 8 1 * *",
                                                     "timezone": "Asia/Shanghai"}]


@pytest.mark.usefixtures("prefect_api")
def test_the_scheduled_run_writes_last_months_report_and_tells_the_manager(demo, clock) -> None:
    from flows.monthly_report import monthly_report

    with unit_of_work() as session:
        numbers = {k: c.number for k, c in monthkit.november(session).items()}
    clock.advance(datetime(2026, 12, 1, 8, 0, tzinfo=SHANGHAI) - clock.now())
    assert monthly_report() == "reported 1"
    assert monthly_report() == "reported 0"  # the schedule may fire again: told once
    with unit_of_work(write=False) as session:
        told = session.scalars(select(Notification).where(
            Notification.event == "monthly_report")).all()
        exports = [e.detail for e in session.scalars(select(AuditEvent).where(
            AuditEvent.action == "report_exported").order_by(AuditEvent.id))]
    assert [n.recipient for n in told] == [f"staff:{demo['by_role']['project_manager']}"]
    body = told[0].body
    assert "2026-11" in told[0].subject and "报修 6 单" in body and "50.0%" in body
    assert "/reports/monthly?community=YGHY&month=2026-11" in body
    html = Path(body.split("HTML：")[1].split()[0])
    xlsx = Path(body.split("XLSX：")[1].split()[0])
    page = html.read_text(encoding="utf-8")
    assert 'data-figure="repairs">6<' in page and numbers["R2"] in page
    assert monthkit.PHONES["A"] not in page and xlsx.stat().st_size > 0
    assert [(e["format"], e["channel"], e["target"]) for e in exports] == [
        ("html", "schedule", str(html)), ("xlsx", "schedule", str(xlsx))]


@pytest.mark.usefixtures("prefect_api")
def test_serve_creates_the_next_run_for_the_first_of_the_month() -> None:
    from uuid import UUID

    from prefect.client.orchestration import get_client

    from propflow import schedules, service

    deployment = next(d for d in service.deployments() if d.name == "monthly_report")
    deployment_id = deployment.apply(_sync=True)  # a browser test may leave a loop running
    at = datetime(2030, 11, 30, 3, 0, tzinfo=UTC)  # years ahead: a run already due would be taken
    try:
        made = schedules.ensure_next_runs(at)
        assert schedules.ensure_next_runs(at) == made  # replicas, later passes: the same run
        with get_client(sync_client=True) as client:
            ours = [r for r in (client.read_flow_run(UUID(i)) for i in made)
                    if r.deployment_id == deployment_id]
    finally:  # the Prefect server is the session's: other tests' schedules find it gone
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)
    assert len(ours) == 1 and ours[0].state is not None and ours[0].state.is_scheduled()
    assert ours[0].expected_start_time == datetime(2030, 12, 1, 8, 0, tzinfo=SHANGHAI)
    assert ours[0].expected_start_time - at == timedelta(hours=21)


def test_in_training_mode_advancing_over_the_first_makes_last_months_report(
        demo, monkeypatch) -> None:
    """A newcomer advances the training clock over 1 December 08:00 and finds November's
    report written and the project manager told, as the schedule would have done."""
    from tasks import runs

    monkeypatch.setenv("PROPFLOW_MODE", "training")
    reset_settings()
    clock_module.set_clock(None)
    monkeypatch.setattr(runs, "start", lambda *args, **kwargs: None)
    monkeypatch.setattr(clock_module, "wall_clock", clock_module.ManualClock(
        datetime(2026, 11, 29, 22, 0, tzinfo=SHANGHAI)))
    runner = CliRunner()

    def cli(*args: str) -> dict:
        done = runner.invoke(app, [*args, "--json"])
        assert done.exit_code == 0, (done.stdout, done.stderr)
        return json.loads(done.stdout)

    try:
        assert cli("clock", "show")["now"] == "2026-11-30 09:00"
        with unit_of_work() as session:
            monthkit.november(session)
        early = cli("clock", "advance", "20h")  # 05:00 on the 1st: not yet
        assert "reports" not in early
        moved = cli("clock", "advance", "4h")  # 09:00: past 08:00
        assert moved["reports"] == ["YGHY 2026-11"]
        assert "reports" not in cli("clock", "advance", "1h")  # once
        with unit_of_work(write=False) as session:
            told = session.scalars(select(Notification).where(
                Notification.event == "monthly_report")).all()
        assert [n.recipient for n in told] == [f"staff:{demo['by_role']['project_manager']}"]
        assert "报修 6 单" in told[0].body
    finally:
        reset_settings()
