"""The staff pages in real Chromium (Debian's, through Playwright) against a live uvicorn
server in this process (same database and clock), at a phone and a desktop viewport.

Steps are opened by test code as their runs would open them; live updates come over
/api/events (server-sent events read from the database), so what a page shows without being
reloaded is what another process wrote.
"""

from __future__ import annotations

from typing import Any

import pytest

from propflow.demo import DEMO_PASSWORD
from tests.webpages import complaint, manager_scene, open_step, repair

LIVE_TIMEOUT = 20_000  # ms: events are read every second; CI machines are busy


def sign_in(page: Any, base: str, staff_id: int, target: str = "/") -> None:
    page.goto(base + target)
    assert "/login" in page.url  # no session: the sign-in page, then back here
    page.fill("#login", str(staff_id))
    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + target)


def rows(page: Any) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all(
        "[data-testid=step-row]", "els => els.map(e => e.dataset.step)")]


def mark(page: Any) -> None:
    """A flag that a reload would lose: the page must still have it after a live update."""
    page.evaluate("window.__notReloaded = true")


def not_reloaded(page: Any) -> bool:
    return bool(page.evaluate("window.__notReloaded === true"))


def wait_connected(page: Any) -> None:
    """Until the page's EventSource is open (htmx's SSE extension says so)."""
    page.wait_for_function("window.__sseOpen === true", timeout=LIVE_TIMEOUT)


def listen(page: Any) -> None:
    page.add_init_script("document.addEventListener('htmx:sseOpen', () =>"
                         " { window.__sseOpen = true; });")


def test_a_manager_on_a_phone_decides_with_a_reason_and_watches_the_case_move_on(
        live_web: str, demo: dict[str, Any], clock: Any, page_phone: Any) -> None:
    scene = manager_scene(clock, demo)
    page = page_phone
    listen(page)
    sign_in(page, live_web, scene["manager"])

    # Only their pending steps, the escalated one first, each with a countdown.
    assert rows(page) == [scene["accept"], scene["approve"]]
    first = page.locator("[data-testid=step-row]").first
    assert first.locator("[data-testid=escalated]").inner_text().startswith("已升级")
    # Late at its first window (breached), counting down the manager's own window now.
    assert first.locator("[data-testid=overdue]").inner_text() == "已超时"
    assert "剩余" in first.locator("[data-testid=countdown]").inner_text()
    second = page.locator("[data-testid=step-row]").nth(1)
    assert second.locator("[data-testid=overdue]").count() == 0
    assert "剩余" in second.locator("[data-testid=countdown]").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # fits the phone

    # The case page in another tab, left open.
    case_tab = page.context.new_page()
    listen(case_tab)
    case_tab.goto(f"{live_web}/cases/{scene['approve_case']}")
    wait_connected(case_tab)
    mark(case_tab)
    step_item = case_tab.locator(f"[data-testid=case-step][data-step='{scene['approve']}']")
    assert step_item.get_attribute("data-status") == "waiting"

    # Refuse the compensation with a reason: the rule wants one when the answer is no.
    page.click(f"[data-testid=step-row][data-step='{scene['approve']}'] a")
    page.wait_for_url(f"{live_web}/steps/{scene['approve']}")
    page.check("input[name=approved][value=false]")
    assert page.locator("#f-reason").evaluate("el => el.required")
    page.fill("#f-reason", "补偿金额超出标准")
    page.fill("#f-comment", "请重新调查")
    page.click("[data-testid=submit]")
    page.wait_for_selector("[data-testid=result]")
    assert "补偿金额超出标准" in page.locator("[data-testid=decision]").inner_text()

    # The case page moved on without a reload: decided, then the run's next step appears.
    case_tab.wait_for_selector(
        f"[data-testid=case-step][data-step='{scene['approve']}'][data-status=decided]",
        timeout=LIVE_TIMEOUT)
    again = open_step(clock, scene["approve_case"], "investigate#2", "investigate",
                      "cs_supervisor")
    case_tab.wait_for_selector(f"[data-testid=case-step][data-step='{again}']",
                               timeout=LIVE_TIMEOUT)
    assert "请重新调查" in case_tab.locator("[data-testid=timeline]").inner_text()
    assert not_reloaded(case_tab)
    case_tab.close()


def test_the_inbox_updates_itself_when_a_step_opens_or_is_decided(
        live_web: str, demo: dict[str, Any], clock: Any, any_page: Any) -> None:
    scene = manager_scene(clock, demo)
    page = any_page
    listen(page)
    sign_in(page, live_web, scene["manager"])
    wait_connected(page)
    mark(page)
    from propflow import actions

    actions.decide(scene["accept"], scene["manager"], {"note": "已督办"})  # from the CLI
    page.wait_for_function(f"() => !document.querySelector(\"[data-step='{scene['accept']}']\")",
                           timeout=LIVE_TIMEOUT)
    number = complaint(unit="1-1-202", description="保洁不到位")
    new = open_step(clock, number, "approve_resolution#1", "approve_resolution",
                    "project_manager")
    page.wait_for_selector(f"[data-testid=step-row][data-step='{new}']", timeout=LIVE_TIMEOUT)
    assert sorted(rows(page)) == sorted([scene["approve"], new])
    assert not_reloaded(page)


def test_a_form_posted_without_its_csrf_token_is_refused(
        live_web: str, demo: dict[str, Any], clock: Any, page_desktop: Any) -> None:
    scene = manager_scene(clock, demo)
    page = page_desktop
    sign_in(page, live_web, scene["manager"], f"/steps/{scene['accept']}")
    page.evaluate("document.querySelector('[data-testid=decide-form] input[name=csrf]')"
                  ".value = 'forged'")
    page.fill("#f-note", "伪造")
    with page.expect_response(f"{live_web}/steps/{scene['accept']}/decide") as answer:
        page.click("[data-testid=submit]")
    assert answer.value.status == 403
    assert "CSRF" in page.content()
    page.goto(f"{live_web}/steps/{scene['accept']}")
    assert page.locator("[data-testid=decide-form]").count() == 1  # still waiting


@pytest.mark.parametrize("lang", ["en"])
def test_the_step_page_in_english_marks_required_fields(
        live_web: str, demo: dict[str, Any], clock: Any, page_desktop: Any, lang: str) -> None:
    number = repair()
    step = open_step(clock, number, "complete#1", "complete", "technician",
                     demo["by_role"]["technician"])
    page = page_desktop
    sign_in(page, live_web, demo["by_role"]["technician"], f"/steps/{step}")
    page.goto(f"{live_web}/steps/{step}?lang={lang}")
    assert page.locator("h1").inner_text().startswith("complete")
    assert page.locator("#f-diagnosis").evaluate("el => el.required")
    assert not page.locator("#f-work_done").evaluate("el => el.required")
    page.click("[data-testid=submit]")  # the browser refuses an empty required field
    assert page.url.endswith(f"/steps/{step}?lang={lang}")
    page.fill("#f-diagnosis", "lamp worn out")
    page.click("[data-testid=submit]")
    page.wait_for_selector("[data-testid=result]")
    assert "Submitted" in page.locator("[data-testid=result]").inner_text()


def test_a_manager_on_a_phone_transfers_an_escalated_step_to_a_colleague(
        live_web: str, demo: dict[str, Any], clock: Any, page_phone: Any) -> None:
    scene = manager_scene(clock, demo)
    colleague = next(p["id"] for p in demo["staff"] if p["name"] == "郑浩")
    page = page_phone
    sign_in(page, live_web, scene["manager"], f"/steps/{scene['accept']}")
    page.click("[data-testid=op-transfer] summary")
    page.select_option("#transfer-to", str(colleague))
    page.fill("#transfer-reason", "吴刚在外区支援")
    page.click("[data-testid=op-transfer] button[type=submit]")
    page.wait_for_selector("[data-testid=result][data-done=transfer]")
    assert "郑浩" in page.locator("[data-testid=step-summary]").inner_text()
    page.click("[data-testid=case-link]")
    timeline = page.locator("[data-testid=timeline]").inner_text()
    assert "转办" in timeline and "→ 郑浩" in timeline and "吴刚在外区支援" in timeline


def _operate(page: Any, base: str, step_id: int, op: str, **fields: str) -> None:
    page.goto(f"{base}/steps/{step_id}")
    page.click(f"[data-testid=op-{op}] summary")
    for name, value in fields.items():
        target = f"#{op}-{name}"
        if page.locator(target).evaluate("el => el.tagName") == "SELECT":
            page.select_option(target, value)
        else:
            page.fill(target, value)
    page.click(f"[data-testid=op-{op}] button[type=submit]")
    page.wait_for_selector(f"[data-testid=result][data-done={op}]")


def test_each_approval_operation_once_in_the_browser(
        live_web: str, demo: dict[str, Any], clock: Any, page_desktop: Any) -> None:
    scene = manager_scene(clock, demo)
    by_role = demo["by_role"]
    page = page_desktop
    sign_in(page, live_web, scene["manager"], f"/steps/{scene['approve']}")
    approve = scene["approve"]
    _operate(page, live_web, approve, "claim")
    _operate(page, live_web, approve, "unclaim")
    _operate(page, live_web, approve, "cc", to=str(by_role["csr"]))
    _operate(page, live_web, approve, "add_signer", to=str(by_role["cs_director"]),
             position="after", reason="金额较大")
    _operate(page, live_web, approve, "delegate", to=str(by_role["cs_supervisor"]),
             reason="请先核实")
    timeline = page.goto(f"{live_web}/cases/{scene['approve_case']}")
    assert timeline and timeline.status == 200
    events = page.locator("[data-testid=event]").evaluate_all(
        "els => els.map(e => e.dataset.action)")
    for action in ("claimed", "unclaimed", "copied", "signer_added", "delegated"):
        assert action in events

    # 驳回 from another approval, and 撤回 by whoever decided the step before it.
    number = complaint(unit="1-1-302", description="绿化带无人打理")
    cleaner = by_role["cleaning"]
    investigate = open_step(clock, number, "investigate#1", "investigate", "cleaning")
    from propflow import actions

    actions.decide(investigate, cleaner, {"findings": "漏剪", "proposed_resolution": "补剪",
                                          "compensation": "50"})
    second = open_step(clock, number, "approve_resolution#1", "approve_resolution",
                       "project_manager", context={"approves": "investigate#1"})
    _operate(page, live_web, second, "send_back", reason="方案不具体")
    assert "已取消" in page.locator("[data-testid=step-summary]").inner_text()

    page.context.clear_cookies()
    sign_in(page, live_web, cleaner)
    again = max(rows(page))  # investigate, reopened for the cleaner by the send-back
    page.goto(f"{live_web}/steps/{again}")
    page.fill("#f-findings", "漏剪两处")
    page.fill("#f-proposed_resolution", "本周补剪")
    page.click("[data-testid=submit]")
    page.wait_for_selector("[data-testid=result]")
    open_step(clock, number, "approve_resolution#2", "approve_resolution", "project_manager",
              context={"approves": "investigate#2"})
    _operate(page, live_web, again, "withdraw", reason="方案写错")
    assert page.locator("[data-testid=decide-form]").count() == 1  # waiting for me again


def test_a_technician_opens_the_one_tap_link_from_their_message_and_decides(
        live_web: str, demo: dict[str, Any], clock: Any, page_phone: Any) -> None:
    technician = demo["by_role"]["technician"]
    number = repair(description="地下车库灯不亮")
    step = open_step(clock, number, "accept#1", "accept", "technician", technician)
    token = message_link(f"staff:{technician}", "l")
    page = page_phone
    page.goto(f"{live_web}/l/{token}")
    page.wait_for_url(f"{live_web}/steps/{step}")
    assert "地下车库灯不亮" in page.locator("[data-testid=step-summary]").inner_text()
    assert page.locator("[data-testid=nav-inbox]").count() == 0  # this step alone
    page.fill("#f-note", "半小时到")
    page.click("[data-testid=submit]")
    page.wait_for_selector("[data-testid=result][data-done=decided]")
    assert page.goto(f"{live_web}/").url.endswith(f"/steps/{step}")
    assert page.goto(f"{live_web}/dashboard").status == 403
    page.context.clear_cookies()  # another browser: the link was used once already
    assert page.goto(f"{live_web}/l/{token}").status == 410


def test_an_owner_rates_the_repair_from_the_link_in_their_message(
        live_web: str, demo: dict[str, Any], clock: Any, page_phone: Any,
        page_desktop: Any) -> None:
    number = repair(description="门禁失灵")
    callback = open_step(clock, number, "callback#1", "callback", "owner")
    token = message_link("owner:13800138000", "o")

    desk = page_desktop  # the front desk watches the case
    listen(desk)
    sign_in(desk, live_web, demo["by_role"]["csr"], f"/cases/{number}")
    wait_connected(desk)
    mark(desk)

    owner = page_phone
    owner.goto(f"{live_web}/o/{token}")
    assert number in owner.content() and "13800138000" not in owner.content()
    owner.check("#rating-5")
    owner.fill("#comment", "修得很快")
    owner.click("[data-testid=submit]")
    assert "5" in owner.locator("[data-testid=answer]").inner_text()

    desk.wait_for_selector(
        f"[data-testid=case-step][data-step='{callback}'][data-status=decided]",
        timeout=LIVE_TIMEOUT)
    assert not_reloaded(desk)


def message_link(recipient: str, kind: str) -> str:
    """The token of the last one-tap link in the recipient's in-app messages."""
    import re

    from sqlalchemy import select

    from models.db import unit_of_work
    from models.outbox import Notification

    with unit_of_work() as session:
        bodies = list(session.scalars(select(Notification.body).where(
            Notification.recipient == recipient).order_by(Notification.id)))
    found = [m.group(1) for body in bodies
             for m in re.finditer(rf"/{kind}/([A-Za-z0-9_-]{{20,}})", body)]
    assert found, f"no /{kind}/ link in the messages to {recipient}"
    return found[-1]


def test_the_step_page_shows_a_change_made_elsewhere_without_losing_the_form(
        live_web: str, demo: dict[str, Any], clock: Any, any_page: Any) -> None:
    scene = manager_scene(clock, demo)
    page = any_page
    listen(page)
    sign_in(page, live_web, scene["manager"], f"/steps/{scene['approve']}")
    wait_connected(page)
    page.fill("#f-comment", "写了一半")
    from propflow import actions

    actions.claim(scene["approve"], scene["manager"])  # e.g. from the API on another device
    page.wait_for_function(
        "document.querySelector('[data-testid=step-summary]').innerText.includes('张伟')",
        timeout=LIVE_TIMEOUT)
    assert page.input_value("#f-comment") == "写了一半"
