"""The warm executor: `propflow serve` runs new and resumed case runs itself, without a new
interpreter, and a resume shows in the Prefect UI the work it did, not the case's history."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from uuid import UUID

import pytest

from propflow import actions
from tests.flowkit import REPAIR, until
from tests.servekit import state, waiting

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


def task_runs(run_id: str, since: datetime) -> list[str]:
    """Names of the task runs the run created after `since`, as its Prefect UI lists them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:  # without a sort: 422 on Prefect 3.8.8
        found = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)])),
            sort=TaskRunSort.ID_DESC, limit=200)
    # When the task started, not when the server wrote its row: under load the server
    # writes task runs from a queue of events, seconds after they ran.
    return sorted(t.name for t in found
                  if (at := t.start_time or t.expected_start_time) and at >= since)


def test_a_resumed_run_goes_on_in_the_service_and_shows_only_what_it_did(service, demo):
    service.start()
    children: set[str] = set()
    watching = threading.Event()

    def watch() -> None:  # any process the service starts while the case moves on
        while not watching.is_set():
            children.update(service.children())
            watching.wait(0.05)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    case = actions.open_repair(**REPAIR)
    number, run_id = case["number"], case["flow_run_id"]
    technician = demo["by_role"]["technician"]
    step_id = until("accept#1", lambda: waiting(number, "accept#1"))
    until("the run to suspend", lambda: state(run_id) == "Suspended")
    actions.decide(step_id, technician, {"note": "马上到"})
    step_id = until("complete#1", lambda: waiting(number, "complete#1"))
    until("the run to suspend again", lambda: state(run_id) == "Suspended")

    decided = datetime.now(UTC)
    actions.decide(step_id, technician, {"diagnosis": "灯管坏"})
    until("owner_acceptance#1", lambda: waiting(number, "owner_acceptance#1"))
    until("the run to suspend again", lambda: state(run_id) == "Suspended")
    watching.set()
    watcher.join()

    # Task runs reach Prefect as events: wait for the last one this resume made.
    shown = until("the resume's task runs", lambda: (
        names := task_runs(run_id, decided)) and "open-step owner_acceptance#1" in names
        and names)
    # The decision read, the owner told, the next step opened and read: nothing before it.
    assert not [n for n in shown if n.startswith(("intake", "auto-dispatch", "assign",
                                                  "open-step accept", "open-step complete"))]
    assert "tell-reporter completed" in shown
    assert children == set(), "a run was executed in a new process"

    # And the case still goes on to its end, replaying from its journal each time.
    actions.decide(waiting(number, "owner_acceptance#1"), demo["by_role"]["csr"],
                   {"accepted": "true"})
    actions.decide(until("callback#1", lambda: waiting(number, "callback#1")),
                   demo["by_role"]["csr"], {"rating": "5"})
    until("the case to close", lambda: actions.show_case(number)["status"] == "closed")
    until("the run to complete", lambda: state(run_id) == "Completed")
