"""/api/events: server-sent events of the audit trail, read from the database, for the cases
the signed-in member of staff may see; a reconnect resumes after its Last-Event-ID."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import func, select

from models.db import unit_of_work
from models.outbox import AuditEvent
from propflow import actions
from propflow.web import auth, events
from propflow.web.auth import Principal
from tests.webpages import manager_scene, open_step, repair, session_cookie


def _last() -> int:
    with unit_of_work() as session:
        return int(session.scalar(select(func.max(AuditEvent.id))) or 0)


def _read(base: str, cookie: str | None, headers: dict[str, str] | None = None,
          query: str = "", want: int = 1) -> tuple[int, list[dict[str, Any]]]:
    """Open the stream, read until `want` update events came (or it ends); status, events."""
    got: list[dict[str, Any]] = []
    cookies = {auth.COOKIE: cookie} if cookie else {}
    with httpx.Client(base_url=base, cookies=cookies, timeout=15) as client, \
            client.stream("GET", f"/api/events{query}", headers=headers or {}) as response:
        if response.status_code != 200:
            return response.status_code, []
        assert response.headers["content-type"].startswith("text/event-stream")
        message: dict[str, str] = {}
        for line in response.iter_lines():
            if line == "":
                if message.get("event") == "update":
                    got.append({"id": int(message["id"]), **json.loads(message["data"])})
                    if len(got) >= want:
                        break
                message = {}
                continue
            key, _, value = line.partition(":")
            message[key] = value.strip()
        return 200, got


def test_the_stream_resumes_after_last_event_id_with_what_i_may_see(live_web, demo, clock):
    scene = manager_scene(clock, demo)
    before = _last()
    actions.decide(scene["approve"], scene["manager"], {"approved": True}, comment="同意")
    number = repair(unit="1-2-101", description="窗户漏风")
    open_step(clock, number, "accept#1", "accept", "technician", demo["by_role"]["technician"])

    cookie, _ = session_cookie(scene["manager"])
    status, got = _read(live_web, cookie, {"Last-Event-ID": str(before)}, want=3)
    assert status == 200
    assert [g["action"] for g in got] == ["decided", "case_opened", "step_opened"]
    assert got[0]["case"] == scene["approve_case"] and got[0]["step"] == "approve_resolution#1"
    assert all(g["id"] > before for g in got)

    # One case only, from where the page was rendered.
    status, got = _read(live_web, cookie, query=f"?case={number}&after={before}")
    assert [(g["case"], g["action"]) for g in got] == [(number, "case_opened")]


def test_another_communitys_staff_hear_nothing_of_it_and_skip_past(demo, clock):
    from tests.apikit import second_community

    scene = manager_scene(clock, demo)
    others = second_community()
    outsider = Principal(others["project_manager"], "袁华", "session")
    rows = events.newer(outsider, 0)
    assert [r for r in rows if not r.get("skip")] == []
    assert rows[-1] == {"id": _last(), "skip": True}  # the cursor moves on regardless

    mine = Principal(scene["manager"], "张伟", "session")
    assert {r["case"] for r in events.newer(mine, 0)} == {
        scene["accept_case"], scene["approve_case"], scene["other_case"]}


def test_a_one_tap_link_hears_its_own_case_alone(demo, clock):
    scene = manager_scene(clock, demo)
    link = Principal(scene["manager"], "张伟", "link", step_id=scene["approve"])
    assert {r["case"] for r in events.newer(link, 0) if not r.get("skip")} == {
        scene["approve_case"]}


def test_without_a_session_the_stream_is_refused(live_web, demo, clock):
    status, _ = _read(live_web, None)
    assert status == 401
