"""A checkpoint's QR link in real Chromium (Debian's, through Playwright) on a phone: opened
without a session it signs in and comes back, records the check-in, and the steward decides
the checkpoint's step right there."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.clock import ManualClock
from core.vocabulary import StepStatus
from models.cases import Decision, Step
from models.db import unit_of_work
from propflow import checkpoints
from propflow.demo import DEMO_PASSWORD
from tests.test_checkin import LOBBY, check_ins, open_round


def test_a_steward_scans_a_checkpoint_signs_in_and_decides_it_there(
        live_web: str, demo: dict[str, Any], clock: ManualClock, page_phone: Any) -> None:
    round_ = open_round(clock)
    lobby = round_["steps"]["lobby"]
    steward = demo["by_role"]["steward"]
    clock.advance(timedelta(minutes=20))
    link = live_web + checkpoints.path(LOBBY)  # what the phone's camera opens
    page = page_phone

    page.goto(link)
    assert "/login" in page.url  # no session: sign in, then back to the checkpoint
    page.fill("#login", str(steward))
    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(link)

    banner = page.locator("[data-testid=checkin]")
    assert banner.get_attribute("data-new") == "true"
    assert "签到成功" in banner.inner_text() and "2026-11-24 09:20" in banner.inner_text()
    assert "照明、电梯运行、门禁、公告栏" in page.locator("[data-testid=checklist]").inner_text()
    assert [e["staff_id"] for e in check_ins(lobby)] == [steward]
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # fits the phone

    # The checklist, filled in and decided from the same page.
    page.fill("#f-not_ok", "公告栏")
    page.fill("#f-note", "公告栏过期通知已撤下")
    page.click("[data-testid=submit]")
    page.wait_for_selector("[data-testid=result]")
    assert page.url.startswith(f"{live_web}/steps/{lobby}?done=decided")
    assert "公告栏过期通知已撤下" in page.locator("[data-testid=decision]").inner_text()
    with unit_of_work(write=False) as session:
        assert session.get(Step, lobby).status == StepStatus.DECIDED
        decision = session.query(Decision).filter_by(step_id=lobby).one()
        assert (decision.decided_by, decision.channel) == (steward, "web")
        assert decision.values["not_ok"] == ["公告栏"]

    # Scanned again: the check-in it already has, nothing recorded twice, the decision shown.
    clock.advance(timedelta(minutes=10))
    page.goto(link)
    banner = page.locator("[data-testid=checkin]")
    assert banner.get_attribute("data-new") == "false"
    assert "已签到" in banner.inner_text() and "2026-11-24 09:20" in banner.inner_text()
    assert page.locator("[data-testid=decide-form]").count() == 0
    assert page.locator("[data-testid=decision]").count() == 1
    assert len(check_ins(lobby)) == 1
