"""Driving a repair flow run from a test: the run pauses in its own thread, the test plays
the people (deciding steps) and moves the clock (lapses), as a user of the CLI would."""

from __future__ import annotations

import threading
import time
from typing import Any
from uuid import UUID

from sqlalchemy import select

from core.clock import ManualClock
from models.cases import Case, Escalation, Step
from models.db import unit_of_work
from models.intake import example
from propflow import actions, sla

WAIT = 180.0  # seconds a test waits for Prefect to reach a state before failing


def until(what: str, probe: Any, timeout: float = WAIT) -> Any:
    """Poll for a state another process or thread reaches; time here is not a window."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# Each procedure's example input (its intake model's, models/<procedure>.py): demo data.
REPAIR = example("repair")
COMPLAINT = example("complaint")
EMERGENCY = example("emergency")


class CaseRun:
    """One case's flow run in a thread of this process, paused in place between steps."""

    procedure = "repair"

    def __init__(self, demo: dict, clock: ManualClock, **fields: Any) -> None:
        self.case = actions.open_case(self.procedure, example(self.procedure) | fields,
                                      start_run=False)
        self._start(demo, clock, self.case["number"])

    def _start(self, demo: dict, clock: ManualClock, number: str) -> None:
        from flows import flow_for

        self.demo, self.clock, self.number = demo, clock, number
        with unit_of_work() as session:
            self.case_id, procedure = session.execute(select(Case.id, Case.procedure).where(
                Case.number == number)).one()
        flow_fn = flow_for(procedure)  # any registered procedure (core/procedures.py)
        self.result: Any = None
        self.error: BaseException | None = None

        def body() -> None:
            try:
                self.result = flow_fn(case_id=self.case_id, number=number)
            except BaseException as exc:  # reported by finish()
                self.error = exc

        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()

    def role(self, role: str) -> int:
        return self.demo["by_role"][role]

    def flow_run_id(self) -> str:
        def probe() -> str | None:
            with unit_of_work() as session:
                return session.get(Case, self.case_id).flow_run_id
        return until("the run to be linked", probe)

    def paused(self) -> bool:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(self.flow_run_id())).state
            return bool(state and state.is_paused())

    def step(self, key: str) -> dict[str, Any]:
        """Wait until the step is open and the run is waiting on it."""
        def probe() -> dict[str, Any] | None:
            if self.error:
                raise AssertionError(f"flow failed: {self.error!r}")
            with unit_of_work() as session:
                step = session.scalars(select(Step).where(
                    Step.case_id == self.case_id, Step.key == key)).first()
                if step is None or step.status != "waiting":
                    return None
                row = actions.step_row(step)
            return row if self.paused() else None
        return until(f"step {key}", probe)

    def decide(self, key: str, by: str | int, remark: str = "", **values: Any) -> dict:
        step = self.step(key)
        staff = self.role(by) if isinstance(by, str) else by
        result = actions.decide(step["id"], staff, values, comment=remark)
        assert result["delivered"], "the decision did not reach the waiting run"
        return result

    def lapse(self, key: str) -> dict[str, Any]:
        """Move the clock past the step's window and run one SLA pass."""
        step = self.step(key)
        with unit_of_work() as session:
            due = session.get(Step, step["id"]).due_at
        self.clock.advance(due - self.clock.now())
        self.clock.advance(__import__("datetime").timedelta(seconds=1))
        tick = sla.tick(start_pending=False)
        assert tick.lapsed >= 1
        return step

    def escalations(self, key: str) -> list[dict[str, Any]]:
        with unit_of_work() as session:
            rows = session.scalars(select(Escalation).join(Step).where(
                Step.case_id == self.case_id, Step.key == key).order_by(Escalation.level))
            return [{"level": e.level, "to_role": e.to_role, "handled": e.handled_at is not None}
                    for e in rows]

    def handled(self, key: str, level: int) -> None:
        until(f"escalation {key} L{level} handled by the run", lambda: any(
            e["level"] == level and e["handled"] for e in self.escalations(key)))

    def finish(self, timeout: float = WAIT) -> Any:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError("the flow run did not finish")
        if self.error:
            raise self.error
        return self.result

    def show(self) -> dict[str, Any]:
        return actions.show_case(self.number)


class ExistingRun(CaseRun):
    """The run of a case opened otherwise (by another flow, a schedule, a storm order),
    driven in this process."""

    def __init__(self, demo: dict, clock: ManualClock, number: str) -> None:  # noqa: D107
        self.case = actions.show_case(number)
        self._start(demo, clock, number)


class RepairRun(CaseRun):
    procedure = "repair"


class ComplaintRun(CaseRun):
    procedure = "complaint"


class EmergencyRun(CaseRun):
    procedure = "emergency"

    def notices(self, event: str) -> list[dict[str, Any]]:
        return [n for n in actions.list_notifications(self.number) if n["event"] == event]
