"""A checkpoint's code scanned against `propflow serve` (training clock, real round runs on a
Prefect server): the round's run opened the checkpoint's step, the scan on the served web door
checks in on it, and the checklist submitted from that page wakes the suspended run, which
closes the round once every checkpoint is done."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from models.cases import Step
from models.db import unit_of_work
from propflow import actions, checkpoints
from propflow.demo import DEMO_PASSWORD
from tests.flowkit import until
from tests.servekit import decide, run_of, state, waiting
from tests.test_checkin import LOBBY, PLAN

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


def test_a_scan_on_the_served_door_checks_in_and_its_checklist_wakes_the_round(
        service: Any, demo: dict[str, Any], tmp_path: Path) -> None:
    from propflow.web import auth

    # The service keeps its key under its own PROPFLOW_HOME: the same key, as replicas share
    # PROPFLOW_SECRET_KEY, so the printed link is the one it accepts.
    (tmp_path / "secret_key").write_text(auth.secret_key(), encoding="utf-8")
    service.start()
    steward = demo["by_role"]["steward"]
    number = actions.open_case("inspection", {"plan": PLAN, "community": "YGHY"})["number"]
    lobby = until("checkpoint#lobby to open", lambda: waiting(number, "checkpoint#lobby"))
    until("the round's run to suspend",
          lambda: (run := run_of(number)) is not None and state(run) == "Suspended")

    with httpx.Client(base_url=service.web_url, follow_redirects=False, timeout=30) as client:
        assert client.get(checkpoints.path(LOBBY)).status_code == 303  # sign in first
        me = client.post("/api/session", json={"login": str(steward),
                                               "password": DEMO_PASSWORD}).json()
        page = client.get(checkpoints.path(LOBBY))
        assert page.status_code == 200, page.text
        assert 'data-new="true"' in page.text and f'action="/steps/{lobby}/decide"' in page.text
        done = client.post(f"/steps/{lobby}/decide", data={
            "csrf": me["csrf_token"], "finding": "none", "note": "照明、门禁正常"})
        assert done.status_code == 303, done.text
        assert "delivery=delivered" in done.headers["location"]  # the run has it
    with unit_of_work(write=False) as session:
        step = session.get(Step, lobby)
        assert [e["staff_id"] for e in step.context["check_ins"]] == [steward]
        assert step.status == "decided"

    for key in ("checkpoint#fire_exit", "checkpoint#rooftop"):
        decide(number, key, steward, finding="none")
    until(f"{number} to close", lambda: actions.show_case(number)["status"] == "closed",
          timeout=90)
