"""The web door as `propflow serve` serves it, with real case runs on a Prefect server: a
decision made in Chromium wakes the run, and the case page, left open, shows the step the
run opens next without being reloaded."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from models.cases import Step
from models.db import unit_of_work
from propflow import actions
from tests.flowkit import REPAIR, until
from tests.servekit import waiting
from tests.test_web_browser import listen, mark, not_reloaded, rows, sign_in, wait_connected

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]
RUN_TIMEOUT = 60_000  # ms: the run resumes within a second or two; a loaded machine is slower


def test_a_decision_in_the_browser_moves_the_served_case_on_without_a_reload(
        service: Any, demo: dict[str, Any], page_phone: Any) -> None:
    service.start()
    base = service.web_url
    # Playwright's sync API keeps an event loop running in this thread, where Prefect's
    # client would hand back a coroutine: the case is opened from another thread.
    with ThreadPoolExecutor(1) as pool:
        number = pool.submit(actions.open_repair, **REPAIR).result()["number"]
    accept = until("accept#1 to open", lambda: waiting(number, "accept#1"))
    with unit_of_work() as session:
        technician = session.get(Step, accept).assignee_id
    assert technician is not None

    page = page_phone
    listen(page)
    sign_in(page, base, technician)
    assert accept in rows(page)

    case_tab = page.context.new_page()
    listen(case_tab)
    case_tab.goto(f"{base}/cases/{number}")
    wait_connected(case_tab)
    mark(case_tab)

    page.goto(f"{base}/steps/{accept}")
    page.fill("#f-note", "马上到")
    page.click("[data-testid=submit]")
    page.wait_for_selector("[data-testid=result][data-done=decided]")

    # The run reads the decision and opens the next step; the open page shows both.
    case_tab.wait_for_selector(
        f"[data-testid=case-step][data-step='{accept}'][data-status=decided]",
        timeout=RUN_TIMEOUT)
    complete = until("complete#1 to open", lambda: waiting(number, "complete#1"), timeout=90)
    case_tab.wait_for_selector(
        f"[data-testid=case-step][data-step='{complete}'][data-status=waiting]",
        timeout=RUN_TIMEOUT)
    assert not_reloaded(case_tab)
    page.goto(f"{base}/")
    assert complete in rows(page) and accept not in rows(page)
