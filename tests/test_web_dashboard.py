"""The operations dashboard: what is open, late, escalated today, stuck or undelivered, per
community the viewer sees, each row linking to its case and its Prefect run."""

from __future__ import annotations

import re

from sqlalchemy import select

from core.vocabulary import CaseStatus
from models.cases import Case
from models.db import unit_of_work
from models.outbox import Notification
from tests.webpages import client_as, manager_scene, repair


def _rows(html: str, testid: str) -> list[str]:
    table = re.search(rf'data-testid="{testid}">(.*?)</table>', html, re.S)
    assert table, testid
    return re.findall(r'href="/cases/([^"]+)"', table.group(1))


def test_the_dashboard_shows_overdue_escalated_stuck_and_failed_per_community(demo, clock):
    from tests.apikit import second_community

    scene = manager_scene(clock, demo)
    elsewhere = repair(unit="1-1-201", description="电梯异响")
    others = second_community()
    with unit_of_work() as session:
        stuck = session.scalars(select(Case).where(Case.number == scene["other_case"])).one()
        stuck.status, stuck.run_state, stuck.run_restarts = CaseStatus.STUCK, "Crashed", 3
        stuck.flow_run_id = "6f1c9a1e-0000-4000-8000-000000000001"
        failed = session.scalars(select(Notification).where(
            Notification.case_id == stuck.id)).first()
        failed.status, failed.attempts = "failed", 5

    client, _ = client_as(scene["manager"])
    page = client.get("/dashboard")
    assert page.status_code == 200, page.text
    assert page.text.count('data-testid="community"') == 1  # 阳光花园 only: their scope
    assert _rows(page.text, "overdue") == [scene["accept_case"]]
    assert set(_rows(page.text, "escalations")) == {scene["accept_case"]}
    assert "L2" in page.text and "项目经理" in page.text
    assert _rows(page.text, "stuck") == [scene["other_case"]]
    assert _rows(page.text, "failed") == [scene["other_case"]]
    assert "http://127.0.0.1:4200/runs/flow-run/6f1c9a1e-0000-4000-8000-000000000001" \
        in page.text
    open_cases = re.search(r'data-testid="n-open"><strong>(\d+)', page.text)
    assert open_cases and int(open_cases.group(1)) == 4  # three repairs and the complaint
    assert elsewhere not in _rows(page.text, "overdue")

    theirs, _ = client_as(others["project_manager"])
    other_page = theirs.get("/dashboard")
    assert scene["accept_case"] not in other_page.text and "清溪园" in other_page.text


def test_a_one_tap_link_does_not_open_the_dashboard(demo, clock):
    scene = manager_scene(clock, demo)
    client, _ = client_as(scene["manager"], step_id=scene["approve"])
    assert client.get("/dashboard").status_code == 403
