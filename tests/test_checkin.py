"""Checking in at a checkpoint: the signed link a checkpoint's QR code holds, opened in the web
door by a member of staff, records who and when on that checkpoint's step of the current
round (once per person and round), audited, and shows the checklist to fill in there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from core.clock import ManualClock
from models import directory, steps
from models.cases import Step, step_by_key
from models.db import unit_of_work
from models.outbox import AuditEvent
from propflow import actions, checkpoints
from propflow.checkpoints import Checkpoint
from tests.apikit import OTHER, second_community
from tests.webkit import sign_in
from tests.webpages import session_cookie

PLAN = "public_facilities"
LOBBY = Checkpoint("YGHY", PLAN, "lobby")


def as_staff(client: TestClient, staff_id: int) -> None:
    """Signed in as someone without a password (the second community's staff)."""
    client.cookies.set("propflow_session", session_cookie(staff_id)[0])


def open_round(clock: ManualClock, plan: str = PLAN, community: str = "YGHY") -> dict[str, Any]:
    """A round of the plan starting now, with each checkpoint's step opened as its run opens
    them (flows/inspection.py): for the area's steward, due at the round's end."""
    number = actions.open_case("inspection", {"plan": plan, "community": community},
                               start_run=False)["number"]
    with unit_of_work() as session:
        case = directory.case(session, number)
        data = case.data
        ids = {}
        for point in data["checkpoints"]:
            ids[point["key"]] = steps.open_step(
                session, case=case, key=f"checkpoint#{point['key']}", kind="checkpoint",
                role=data["role"], assignee_id=data["assignee"], now=clock.now(),
                context={"duty": f"{point['label']}：{'、'.join(point['items'])}"},
                due_at=datetime.fromisoformat(data["ends_at"])).id
    return {"number": number, "steps": ids, "ends_at": datetime.fromisoformat(data["ends_at"])}


def check_ins(step_id: int) -> list[dict[str, Any]]:
    with unit_of_work(write=False) as session:
        return list((session.get(Step, step_id).context or {}).get("check_ins", []))


def audited(action: str = "checked_in") -> list[AuditEvent]:
    with unit_of_work(write=False) as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                               .order_by(AuditEvent.id)).all()
        session.expunge_all()
        return list(rows)


def test_a_scan_records_who_and_when_on_the_rounds_step_and_shows_its_checklist(
        web_client: TestClient, demo: dict[str, Any], clock: ManualClock) -> None:
    round_ = open_round(clock)
    steward = demo["by_role"]["steward"]
    sign_in(web_client, steward)
    clock.advance(timedelta(minutes=47))  # 09:47 in Shanghai, on the manual (or training) clock
    page = web_client.get(checkpoints.path(LOBBY))
    assert page.status_code == 200, page.text
    lobby = round_["steps"]["lobby"]
    assert f'data-testid="checkin" data-new="true"\n   data-step="{lobby}"' in page.text
    assert "签到成功" in page.text and "2026-11-24 09:47" in page.text and "赵磊" in page.text
    # The checkpoint's step is right there to fill in and decide.
    assert f'action="/steps/{lobby}/decide"' in page.text
    assert "大堂及电梯厅：照明、电梯运行、门禁、公告栏" in page.text
    assert check_ins(lobby) == [{"staff_id": steward, "name": "赵磊",
                                 "at": clock.now().astimezone(UTC).isoformat()}]
    assert [check_ins(s) for k, s in round_["steps"].items() if k != "lobby"] == [[], []]
    [event] = audited()
    assert (event.actor, event.detail["step"], event.detail["checkpoint"]) == \
        (f"staff:{steward}", "checkpoint#lobby", "lobby")
    # The case's timeline names it.
    assert "巡查签到" in web_client.get(f"/cases/{round_['number']}").text


def test_scanning_again_in_the_same_round_records_nothing_more(
        web_client: TestClient, demo: dict[str, Any], clock: ManualClock) -> None:
    round_ = open_round(clock)
    sign_in(web_client, demo["by_role"]["steward"])
    clock.advance(timedelta(minutes=5))
    assert web_client.get(checkpoints.path(LOBBY)).status_code == 200
    first = check_ins(round_["steps"]["lobby"])
    clock.advance(timedelta(minutes=30))
    again = web_client.get(checkpoints.path(LOBBY))
    assert again.status_code == 200
    assert 'data-new="false"' in again.text and "已签到" in again.text
    assert "2026-11-24 09:05" in again.text and "未重复记录" in again.text
    assert check_ins(round_["steps"]["lobby"]) == first
    assert len(audited()) == 1
    # A colleague standing in is recorded beside them, once.
    sign_in(web_client, demo["by_role"]["csr"])
    assert 'data-new="true"' in web_client.get(checkpoints.path(LOBBY)).text
    assert 'data-new="false"' in web_client.get(checkpoints.path(LOBBY)).text
    assert [e["staff_id"] for e in check_ins(round_["steps"]["lobby"])] == \
        [demo["by_role"]["steward"], demo["by_role"]["csr"]]


def test_the_next_round_takes_a_new_check_in(web_client: TestClient, demo: dict[str, Any],
                                            clock: ManualClock) -> None:
    today = open_round(clock)
    sign_in(web_client, demo["by_role"]["steward"])
    web_client.get(checkpoints.path(LOBBY))
    clock.advance(timedelta(days=1))  # Wednesday 09:00: the plan's next round
    tomorrow = open_round(clock)
    page = web_client.get(checkpoints.path(LOBBY))
    assert 'data-new="true"' in page.text and "2026-11-25 09:00" in page.text
    assert len(check_ins(today["steps"]["lobby"])) == 1
    assert len(check_ins(tomorrow["steps"]["lobby"])) == 1


def test_outside_a_round_the_scan_says_so_and_records_nothing(
        web_client: TestClient, demo: dict[str, Any], clock: ManualClock) -> None:
    sign_in(web_client, demo["by_role"]["steward"])
    none_yet = web_client.get(checkpoints.path(LOBBY))  # no round has been made
    assert none_yet.status_code == 409
    assert 'data-reason="no_round"' in none_yet.text
    assert "当前没有进行中的巡查" in none_yet.text and "阳光花园现在没有进行中的公共设施巡查" \
        in none_yet.text
    round_ = open_round(clock)
    clock.advance(round_["ends_at"] - clock.now() + timedelta(minutes=1))  # 17:31
    late = web_client.get(checkpoints.path(LOBBY))
    assert late.status_code == 409 and "2026-11-24 17:31" in late.text
    assert "Traceback" not in late.text and "没有记录任何签到" in late.text
    assert check_ins(round_["steps"]["lobby"]) == [] and audited() == []


def test_only_the_communitys_stewards_and_customer_service_check_in(
        web_client: TestClient, demo: dict[str, Any], clock: ManualClock) -> None:
    round_ = open_round(clock)
    sign_in(web_client, demo["by_role"]["technician"])
    refused = web_client.get(checkpoints.path(LOBBY))
    assert refused.status_code == 403 and "不能在此签到" in refused.text
    other = second_community()
    as_staff(web_client, other["csr"])  # customer service, of 清溪园
    assert web_client.get(checkpoints.path(LOBBY)).status_code == 403
    assert check_ins(round_["steps"]["lobby"]) == [] and audited() == []
    # Their own community's code works for them (a round there, their own link).
    theirs = open_round(clock, community=OTHER)
    page = web_client.get(checkpoints.path(Checkpoint(OTHER, PLAN, "lobby")))
    assert page.status_code == 200, page.text
    assert len(check_ins(theirs["steps"]["lobby"])) == 1


def test_without_a_session_the_link_asks_to_sign_in_and_a_one_tap_link_is_not_enough(
        web_client: TestClient, demo: dict[str, Any], clock: ManualClock) -> None:
    round_ = open_round(clock)
    path = checkpoints.path(LOBBY)
    first = web_client.get(path)
    assert first.status_code == 303 and first.headers["location"].startswith("/login?next=")
    # A one-tap link's session (one step alone) does not check anyone in either.
    value, _ = session_cookie(demo["by_role"]["steward"], step_id=round_["steps"]["rooftop"])
    web_client.cookies.set("propflow_session", value)
    assert web_client.get(path).status_code == 303
    assert check_ins(round_["steps"]["lobby"]) == []


def test_the_check_in_is_on_the_round_whose_window_holds_now(
        demo: dict[str, Any], clock: ManualClock) -> None:
    """Straight through propflow.checkpoints (what the page calls)."""
    round_ = open_round(clock)
    done = checkpoints.check_in(demo["by_role"]["steward"], Checkpoint("YGHY", PLAN, "rooftop"))
    assert (done["step_id"], done["case"], done["new"]) == \
        (round_["steps"]["rooftop"], round_["number"], True)
    with unit_of_work(write=False) as session:
        case = directory.case(session, round_["number"])
        assert step_by_key(session, case.id, "checkpoint#rooftop").id == done["step_id"]


def test_scans_at_the_same_moment_are_each_recorded_once(demo: dict[str, Any],
                                                         clock: ManualClock) -> None:
    """Five of the community's service staff scan together, each twice: five check-ins."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    round_ = open_round(clock)
    people = [p["id"] for p in demo["staff"]
              if p["role"] in ("steward", "csr", "cs_supervisor", "cs_director")] * 2
    start = Barrier(len(people))

    def scan(staff_id: int) -> bool:
        start.wait()
        return bool(checkpoints.check_in(staff_id, LOBBY)["new"])

    with ThreadPoolExecutor(len(people)) as pool:
        new = list(pool.map(scan, people))
    assert sum(new) == 5
    assert sorted(e["staff_id"] for e in check_ins(round_["steps"]["lobby"])) == \
        sorted(set(people))
    assert len(audited()) == 5
