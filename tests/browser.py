"""Real Chromium for the web pages: Debian's `chromium` (scripts/test installs it with
fonts-noto-cjk), driven by Playwright's sync API, at a desktop and a phone viewport.

Without Chromium the browser tests skip, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = os.environ.get("PROPFLOW_TEST_CHROMIUM", "/usr/bin/chromium")
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}}
PHONE: dict[str, Any] = {"viewport": {"width": 390, "height": 844}, "is_mobile": True,
                         "has_touch": True, "device_scale_factor": 3}


def _chromium_missing() -> str | None:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM} (scripts/test installs Debian's chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")  # stopped after its module: its event loop, left running,
def browser() -> Iterator[Any]:  # made Prefect's sync calls in later flow tests go async
    missing = _chromium_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs the browser tests: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


def _context(browser: Any, options: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", **options)
    context.set_default_timeout(20_000)  # a busy CI machine, not a slow page
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def page_desktop(browser: Any) -> Iterator[Any]:
    yield from _context(browser, DESKTOP)


@pytest.fixture
def page_phone(browser: Any) -> Iterator[Any]:
    yield from _context(browser, PHONE)


@pytest.fixture(params=["phone", "desktop"])
def any_page(request: pytest.FixtureRequest, browser: Any) -> Iterator[Any]:
    """The same test at both viewports."""
    yield from _context(browser, PHONE if request.param == "phone" else DESKTOP)
