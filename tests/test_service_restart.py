"""The served service: a waiting case holds no process, and survives a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import select

from models.cases import Case, Step
from models.db import unit_of_work
from propflow import app
from propflow.clock import set_clock
from tests.flowkit import until

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


class Service:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.proc = env, log, None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "propflow.cli", "serve"], cwd=ROOT, env=self.env,
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        from prefect.client.orchestration import get_client

        def served() -> bool:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            with get_client(sync_client=True) as client:
                try:
                    client.read_deployment_by_name("repair/repair")
                except Exception:
                    return False
            return "polling for scheduled runs" in self.log.read_text()
        until("the service to serve its deployments", served, timeout=90)

    def children(self) -> list[str]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
                             capture_output=True, text=True).stdout
        return out.split()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # a crash, not a polite shutdown
            self.proc.wait(10)


@pytest.fixture
def service(demo, prefect_api, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PROPFLOW_MODE", "training")
    set_clock(None)  # the service and this test share the training clock in the database
    from propflow.settings import reset_settings

    reset_settings()
    env = dict(os.environ, PREFECT_API_URL=prefect_api, PROPFLOW_SLA_INTERVAL_SECONDS="1",
               PREFECT_RUNNER_POLL_FREQUENCY="1", PROPFLOW_HOME=str(tmp_path))
    svc = Service(env, tmp_path / "serve.log")
    yield svc
    svc.stop()
    if svc.log.exists():  # shown by pytest only when the test failed
        print("---- propflow serve log (tail) ----")
        print(svc.log.read_text(errors="replace")[-6000:])
        with unit_of_work() as session:
            for number, run_id in session.execute(select(Case.number, Case.flow_run_id)):
                print(f"{number}: run {run_id} {_state(run_id) if run_id else ''}")


def _state(run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run_id)).state
        return state.name if state else ""


def _waiting(number: str, key: str) -> int | None:
    with unit_of_work() as session:
        step = session.scalars(select(Step).join(Case).where(
            Case.number == number, Step.key == key, Step.status == "waiting")).first()
        return step.id if step else None


def test_waiting_case_holds_no_process_and_survives_a_restart(service, demo):
    service.start()
    case = app.open_repair(unit="1-1-101", category="public_area", priority="medium",
                           reporter="业主张三", phone="13800138000", description="楼道灯不亮")
    run_id = case["flow_run_id"]
    assert run_id, "the case's run was created with the case"
    step_id = until("accept#1", lambda: _waiting(case["number"], "accept#1"))
    until("the run to suspend", lambda: _state(run_id) == "Suspended")
    until("the run's process to exit", lambda: service.children() == [])

    service.stop()
    service.start()
    assert _state(run_id) == "Suspended"

    technician = demo["by_role"]["technician"]
    app.decide(step_id, technician, {"note": "重启后接单"})
    step_id = until("complete#1 after the restart",
                     lambda: _waiting(case["number"], "complete#1"))
    app.decide(step_id, technician, {"diagnosis": "灯管坏"})
    step_id = until("owner_acceptance#1", lambda: _waiting(case["number"], "owner_acceptance#1"))
    app.decide(step_id, demo["by_role"]["csr"], {"accepted": "true"})
    step_id = until("callback#1", lambda: _waiting(case["number"], "callback#1"))
    app.decide(step_id, demo["by_role"]["csr"], {"rating": "5"})
    until("the case to close", lambda: app.show_case(case["number"])["status"] == "closed")
    until("the run to complete", lambda: _state(run_id) == "Completed")


def test_lapse_while_suspended_escalates_inside_the_case_run(service, demo):
    from propflow import clock

    service.start()
    case = app.open_repair(unit="1-1-101", category="public_area", priority="high",
                           reporter="业主张三", phone="13800138000", description="楼道漏水")
    until("accept#1", lambda: _waiting(case["number"], "accept#1"))
    until("the run to suspend", lambda: _state(case["flow_run_id"]) == "Suspended")
    clock.advance("11m")  # high priority: accept within 10 minutes, around the clock
    # The service's own SLA clock notices, and the run escalates.
    until("the escalation", lambda: any(
        n["event"] == "escalated" for n in app.list_notifications(case["number"])))
    shown = app.show_case(case["number"])
    assert shown["steps"][0]["escalations"][0]["to_role"] == "cs_supervisor"
    until("the run to suspend again", lambda: _state(case["flow_run_id"]) == "Suspended")


def test_served_emergency_fans_out_across_replays(service, demo):
    """Suspended between every decision, the run replays its fan-out wait from the record."""
    service.start()
    case = app.report_emergency(kind="fire", community="YGHY", location="2号楼地库",
                                reporter="保安", buildings=["1"])
    number = case["number"]
    step_id = until("activate#1", lambda: _waiting(number, "activate#1"))
    until("the run to suspend", lambda: _state(case["flow_run_id"]) == "Suspended")
    app.decide(step_id, demo["by_role"]["cs_supervisor"], {})
    keys = ["acknowledge-security#1", "acknowledge-tech_supervisor#1", "acknowledge-pr#1"]
    for key in reversed(keys):
        step_id = until(key, lambda key=key: _waiting(number, key))
        until("the run to suspend", lambda: _state(case["flow_run_id"]) == "Suspended")
        app.decide(step_id, demo["by_role"][key.split("-", 1)[1].split("#")[0]], {})
    step_id = until("resolve#1", lambda: _waiting(number, "resolve#1"))
    app.decide(step_id, demo["by_role"]["cs_supervisor"],
               {"summary": "已扑灭", "cause": "电线短路"})
    until("incident_report#1", lambda: _waiting(number, "incident_report#1"))
    events = [n["event"] for n in app.list_notifications(number)]
    assert events.count("activated") >= 2 and "resolved" in events  # summary row + household
    shown = app.show_case(number)
    assert {s["key"]: s["status"] for s in shown["steps"]}["update#1"] == "cancelled"
