"""The monthly report in the web door (/reports/monthly): the same figures for the roles
that may read them, a month picker, HTML and XLSX downloads, the supervisor's suggestion;
every view and download audited. Over HTTP, then in real Chromium."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from models.db import unit_of_work
from models.outbox import AuditEvent
from tests import monthkit
from tests.webpages import client_as

PAGE = "/reports/monthly?community=YGHY&month=2026-11"
PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


@pytest.fixture
def month(demo: dict) -> dict[str, str]:
    with unit_of_work() as session:
        return {k: c.number for k, c in monthkit.november(session).items()}


def _exports() -> list[dict[str, Any]]:
    with unit_of_work(write=False) as session:
        return [e.detail | {"actor": e.actor} for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "report_exported")
            .order_by(AuditEvent.id))]


def test_the_manager_sees_the_months_figures_and_downloads_them(demo, month) -> None:
    manager = demo["by_role"]["project_manager"]
    client, _ = client_as(manager)
    page = client.get(PAGE)
    assert page.status_code == 200
    assert 'data-figure="repairs">6<' in page.text
    assert 'data-figure="satisfaction">72.0<' in page.text
    assert page.text.count("<svg") >= 6 and not PHONE.search(page.text)
    assert 'type="month"' in page.text and 'value="2026-11"' in page.text
    html = client.get("/reports/monthly.html?community=YGHY&month=2026-11")
    assert html.status_code == 200 and "attachment" in html.headers["content-disposition"]
    assert 'data-figure="repeat_rate">50.0%<' in html.text and "<script" not in html.text
    xlsx = client.get("/reports/monthly.xlsx?community=YGHY&month=2026-11")
    book = load_workbook(io.BytesIO(xlsx.content))
    assert {r[0]: r[1] for r in book["概要"].iter_rows(values_only=True) if r}["报修量"] == 6
    assert [(e["format"], e["channel"], e["actor"]) for e in _exports()] == [
        ("view", "web", f"staff:{manager}"), ("html", "web", f"staff:{manager}"),
        ("xlsx", "web", f"staff:{manager}")]


def test_roles_that_may_not_read_it_are_refused(demo, month) -> None:
    client, _ = client_as(demo["by_role"]["technician"])
    page = client.get(PAGE)
    assert page.status_code == 403 and "data-figure" not in page.text
    assert "项目经理" in page.text  # says who may
    download = client.get("/reports/monthly.xlsx?community=YGHY&month=2026-11")
    assert download.status_code == 403
    assert _exports() == []
    bad = client_as(demo["by_role"]["cs_supervisor"])[0].get(
        "/reports/monthly?community=YGHY&month=2026-13")
    assert bad.status_code == 422 and "expected a month such as 2026-11" in bad.text


def test_the_suggestion_is_saved_from_the_page_and_audited(demo, month) -> None:
    supervisor = demo["by_role"]["cs_supervisor"]
    client, csrf = client_as(supervisor)
    form = {"community": "YGHY", "month": "2026-11", "suggestion": "重复报修逐单复盘"}
    assert client.post("/reports/monthly/suggestion", data=form).status_code == 403  # no csrf
    saved = client.post("/reports/monthly/suggestion", data=form | {"csrf": csrf})
    assert saved.status_code == 303
    page = client.get(saved.headers["location"])
    assert "重复报修逐单复盘" in page.text and 'data-testid="saved"' in page.text
    with unit_of_work(write=False) as session:
        edit = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "report_suggestion_set")).one()
    assert edit.actor == f"staff:{supervisor}" and edit.detail["text"] == "重复报修逐单复盘"


def test_in_the_browser_a_manager_picks_the_month_and_sees_the_numbers(
        live_web: str, demo: dict[str, Any], month: dict[str, str], page_desktop: Any) -> None:
    from tests.test_web_browser import sign_in

    page = page_desktop
    sign_in(page, live_web, demo["by_role"]["project_manager"], "/reports/monthly")
    # The default is last month (the clock says November): October, R0 and R8.
    assert page.input_value("#month") == "2026-10"
    assert page.inner_text("[data-figure=repairs]") == "2"
    page.fill("#month", "2026-11")
    page.click("[data-testid=month-picker] button[type=submit]")
    page.wait_for_url("**month=2026-11**")
    assert page.inner_text("[data-figure=repairs]") == "6"
    assert page.inner_text("[data-figure=repeat_rate]") == "50.0%"
    assert page.inner_text("[data-figure=satisfaction]") == "72.0"
    assert page.locator("[data-testid=report] svg").count() >= 6
    assert page.locator("[data-testid=report] svg").first.is_visible()
    assert "报修类别" in page.inner_text("[data-testid=report]")
    page.fill("#suggestion", "回访增加晚间时段")
    page.click("[data-testid=suggestion-form] button[type=submit]")
    page.wait_for_selector("[data-testid=saved]")
    assert page.inner_text("[data-figure=suggestion]") == "回访增加晚间时段"
    with page.expect_download() as download:
        page.click("[data-testid=download-xlsx]")
    assert download.value.suggested_filename == "monthly-YGHY-2026-11.xlsx"


def test_company_cs_reads_every_community_and_a_manager_may_not(demo, month) -> None:
    company, _ = client_as(demo["by_role"]["company_cs"])
    page = company.get("/reports/monthly?community=all&month=2026-11")
    assert page.status_code == 200 and 'data-figure="repairs">6<' in page.text
    assert '<option value="all" selected>' in page.text
    assert 'data-testid="suggestion-form"' not in page.text  # a suggestion is a community's
    manager, _ = client_as(demo["by_role"]["project_manager"])
    refused = manager.get("/reports/monthly?community=all&month=2026-11")
    assert refused.status_code == 403 and "全部项目" in refused.text
    assert '<option value="all"' not in refused.text
