"""The monthly report (issue 10, "Monthly figures") on both databases: the figures of a
hand-countable month (tests/monthkit.py) counted again here from the month's story, the
month's bounds in Shanghai time, the exports without phone numbers (and with them when the
policy allows), every export audited, bad input refused by name."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from sqlalchemy import select
from typer.testing import CliRunner

from models import kpi
from models.db import unit_of_work
from models.org import Community
from models.outbox import AuditEvent
from propflow.cli import app as cli
from tests import monthkit

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


@pytest.fixture
def month(demo: dict) -> dict[str, Any]:
    with unit_of_work() as session:
        cases = monthkit.november(session)
        return {name: c.number for name, c in cases.items()}


def _figures(community: str | None = "YGHY", month: str = "2026-11", **kw: Any) -> kpi.Figures:
    with unit_of_work(write=False) as session:
        return kpi.figures(session, kpi.community_of(session, community),
                           kpi.Month.parse(month), now=NOW, **kw)


def run(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    return result


def test_the_month_counted_by_hand(month: dict[str, Any]) -> None:
    f = _figures()
    # Received in November (Shanghai): R1-R6. R7 came at 00:10 on 1 December in Shanghai
    # (still 30 November in UTC); R0 at 23:30 on 31 October: neither counts.
    assert f.repairs == 6
    assert {c.key: c.count for c in f.by_category} == {
        "water_electric": 2, "public_area": 2, "in_unit": 1, "civil": 1}
    # Done by the month's end: R1, R2, R3, R5; R4 and R6 are open.
    assert (f.completed, f.completion_rate) == (4, pytest.approx(4 / 6))
    # Receipt to the last completion: 4 h, 48 h, 2 h, 6 h; p90 by nearest rank: the 4th of 4.
    assert f.resolved == 4
    assert f.resolve_mean_hours == pytest.approx((4 + 48 + 2 + 6) / 4)
    assert f.resolve_p90_hours == pytest.approx(48)
    # Repeats: R2 (R1, 17 days before), R4 (R3, 5 days), R5 (R0, an hour before, in
    # October); R6 is 41 days after R8: not a repeat.
    assert (f.repeats, f.repeat_rate) == (3, pytest.approx(0.5))
    assert {r["number"] for r in f.repeat_list} == {month["R2"], month["R4"], month["R5"]}
    assert {r["number"]: r["previous"] for r in f.repeat_list}[month["R5"]] == month["R0"]
    # Rework: only R2's re-inspection ordered the work redone, of the 4 completed once.
    assert (f.reworked, f.worked, f.rework_rate) == (1, 4, pytest.approx(0.25))
    # First-time fix: R1 and R5 were accepted at once; R2 and R3 were disputed.
    assert (f.first_time_fixed, f.first_time_fix_rate) == (2, pytest.approx(0.5))
    # Ratings given in November: R1 5, R2 4, R3 2, R5 3, C1 4 (R0's 1 was in October).
    assert f.ratings == {1: 0, 2: 1, 3: 1, 4: 2, 5: 1}
    assert f.rating_mean == pytest.approx(18 / 5)
    assert f.satisfaction == pytest.approx(72)
    assert [r["number"] for r in f.low_ratings] == [month["R3"]]
    # Complaints, most frequent first; C4 was October's.
    assert [(c.key, c.count) for c in f.complaint_types] == [("environment", 2), ("noise", 1)]
    # Escalations: R4's dispatch at levels 1 and 2, C2's acknowledgement at 1.
    assert {c.key: c.count for c in f.escalations} == {"1": 2, "2": 1}
    # Completion steps: R1, R2's first, R5 on time; R2's second and R3's late. R4's dispatch
    # was decided after escalating; R6's acceptance waits past its due time: both late.
    on_time = {(o.procedure, o.kind): (o.counted, o.on_time) for o in f.on_time}
    assert on_time[("repair", "complete")] == (5, 3)
    assert on_time[("repair", "dispatch")] == (1, 0)
    assert on_time[("repair", "accept")] == (1, 0)
    assert on_time[("complaint", "acknowledge")] == (1, 0)
    # No rounds yet: none, not an error.
    assert (f.rounds, f.rounds_on_time, f.rounds_rate) == (0, 0, None)
    assert (f.repeat_target, f.satisfaction_baseline, f.satisfaction_target) == (0.05, 80, 90)


def test_trend_and_other_months(month: dict[str, Any]) -> None:
    f = _figures()
    trend = {p.month: p for p in f.trend}
    assert list(trend)[0] == "2025-12" and list(trend)[-1] == "2026-11"
    assert (trend["2026-11"].repairs, trend["2026-11"].satisfaction) == (6, pytest.approx(72))
    # October: R0 and R8, both done within October; R0 rated 1.
    assert trend["2026-10"].repairs == 2
    assert trend["2026-10"].completion_rate == pytest.approx(1.0)
    assert trend["2026-10"].satisfaction == pytest.approx(20)
    assert trend["2026-09"].repairs == 0 and trend["2026-09"].completion_rate is None
    december = _figures(month="2026-12")
    assert december.repairs == 1 and december.repeats == 1  # R7 repeats R2 (11 days)


def test_rounds_done_on_time(demo: dict) -> None:
    with unit_of_work() as session:
        monthkit.november(session, rounds=True)
    f = _figures()
    assert (f.rounds, f.rounds_on_time, f.rounds_rate) == (2, 1, pytest.approx(0.5))


def test_every_community(month: dict[str, Any]) -> None:
    with unit_of_work() as session:
        company = session.scalars(select(Community)).first()
        assert company is not None
        session.add(Community(company_id=company.company_id, code="OTHER", name="另一项目"))
    assert _figures("OTHER").repairs == 0
    assert _figures(None).repairs == 6


def test_terminal_and_json(month: dict[str, Any]) -> None:
    result = run("report", "monthly", "--community", "YGHY", "--month", "2026-11", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["repairs"] == 6 and data["repeats"] == 3 and data["complaints"] == 3
    assert not PHONE.search(result.output)
    table = run("report", "monthly", "--community", "YGHY", "--month", "2026-11")
    assert table.exit_code == 0, table.output
    assert "报修量" in table.output and "50.0%" in table.output  # the repeat rate


def _exports() -> list[dict[str, Any]]:
    with unit_of_work(write=False) as session:
        return [e.detail for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "report_exported")
            .order_by(AuditEvent.id))]


def test_html_export_has_charts_no_phone_and_is_audited(month: dict[str, Any],
                                                        tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = run("report", "monthly", "--community", "YGHY", "--month", "2026-11",
                 "--out", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    # Offline: charts inline as SVG, text kept as text; nothing fetched, no script.
    assert page.count("<svg") >= 6 and "报修类别" in page
    assert "<script" not in page
    assert re.findall(r"https?://[^\"' <]*", page) == ["http://www.w3.org/2000/svg"] * 6
    assert 'data-figure="repairs">6<' in page and 'data-figure="repeat_rate">50.0%<' in page
    assert month["R2"] in page  # the repeats' list
    for phone in monthkit.PHONES.values():
        assert phone not in page
    assert not PHONE.search(page)
    last = _exports()[-1]
    assert (last["community"], last["month"], last["format"], last["personal_data"],
            last["target"]) == ("YGHY", "2026-11", "html", False, str(out.resolve()))


def test_xlsx_export_numbers_no_phone(month: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "report.xlsx"
    result = run("report", "monthly", "--community", "YGHY", "--month", "2026-11",
                 "--out", str(out))
    assert result.exit_code == 0, result.output
    book = load_workbook(out)
    assert {"概要", "报修类别", "步骤按时率", "满意度", "投诉类型", "超时升级",
            "12个月趋势", "重复报修明细", "低分回访"} <= set(book.sheetnames)
    summary = {row[0]: row[1] for row in book["概要"].iter_rows(values_only=True) if row}
    assert summary["报修量"] == 6
    assert summary["完成率"] == pytest.approx(4 / 6)  # a number, shown as %
    assert summary["满意度（百分制）"] == pytest.approx(72)
    assert list(book["投诉类型"].iter_rows(min_row=2, values_only=True)) == [
        ("环境卫生", "environment", 2), ("噪音扰民", "noise", 1)]
    text = " ".join(str(v) for ws in book for row in ws.iter_rows(values_only=True)
                    for v in row if v is not None)
    assert not PHONE.search(text)
    assert _exports()[-1]["format"] == "xlsx"


def test_policy_allows_phone_numbers(month: dict[str, Any], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import DEMO_POLICY, reset_settings

    policy = tmp_path / "policy.yaml"
    policy.write_text(DEMO_POLICY.read_text(encoding="utf-8").replace(
        "personal_data: false", "personal_data: true"), encoding="utf-8")
    monkeypatch.setenv("PROPFLOW_POLICY", str(policy))
    reset_settings()
    out = tmp_path / "report.html"
    assert run("report", "monthly", "--community", "YGHY", "--month", "2026-11",
               "--out", str(out)).exit_code == 0
    assert monthkit.PHONES["A"] in out.read_text(encoding="utf-8")  # R2, a repeat in unit A
    assert _exports()[-1]["personal_data"] is True


@pytest.mark.parametrize("args, field", [
    (["--month", "2026-13"], "--month"),
    (["--month", "November"], "--month"),
    (["--community", "NOPE"], "--community"),
    (["--out", "report.pdf"], "--out"),
])
def test_bad_input(demo: dict, args: list[str], field: str) -> None:
    base = {"--community": "YGHY", "--month": "2026-11"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    result = run("report", "monthly", *[x for kv in base.items() for x in kv])
    assert result.exit_code != 0
    assert field.lstrip("-") in result.output and "expected" in result.output
    assert "Traceback" not in result.output


def test_suggestion_edited_and_audited(demo: dict, month: dict[str, Any]) -> None:
    supervisor = str(demo["by_role"]["cs_supervisor"])
    result = run("report", "suggest", "--community", "YGHY", "--month", "2026-11",
                 "--text", "报修回访增加晚间时段", "--as", supervisor)
    assert result.exit_code == 0, result.output
    assert _figures().suggestion == "报修回访增加晚间时段"
    run("report", "suggest", "--community", "YGHY", "--month", "2026-11",
        "--text", "重复报修逐单复盘", "--as", supervisor)
    assert _figures().suggestion == "重复报修逐单复盘"
    with unit_of_work(write=False) as session:
        edits = [e.detail for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "report_suggestion_set")
            .order_by(AuditEvent.id))]
    assert [(e["text"], e["before"]) for e in edits] == [
        ("报修回访增加晚间时段", ""), ("重复报修逐单复盘", "报修回访增加晚间时段")]
    refused = run("report", "suggest", "--community", "YGHY", "--month", "2026-11",
                  "--text", "x", "--as", str(demo["by_role"]["technician"]))
    assert refused.exit_code == 2 and "无权" in refused.output
    personal = run("report", "suggest", "--community", "YGHY", "--month", "2026-11",
                   "--text", "请回访 13911110001 业主", "--as", supervisor)
    assert personal.exit_code == 2 and "suggestion" in personal.output
    assert _figures().suggestion == "重复报修逐单复盘"
