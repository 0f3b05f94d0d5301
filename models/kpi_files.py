"""The monthly report as files: an HTML page whose charts are inline SVG (it reads offline,
with no network and no script), and an XLSX workbook with a sheet per section.

Charts are drawn by pygal, which writes SVG itself: its text stays text (CJK included, in
the reader's own fonts) and it needs neither numpy nor a rendering backend (README
"Monthly report 月度报表" says what it costs). Its tooltips' script, fetched from the
network by default, is turned off. Here, not in propflow/, because the scheduled run
(flows/monthly_report.py) writes the same files.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from models.kpi import Count, Figures

TEMPLATES = Path(__file__).parent / "templates"
FONTS = "'Noto Sans CJK SC', 'Source Han Sans SC', 'PingFang SC', 'Microsoft YaHei', sans-serif"
_env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                   autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                   lstrip_blocks=True)


def pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


_env.filters.update(pct=pct, num=num)
_INERT = re.compile(r"<script\b.*?</script>|<!--.*?-->", re.S)


def _chart(kind: str, title: str, *, labels: list[str], series: list[tuple[str, list[Any]]],
           percent: bool = False, legend: bool = False, height: int = 300) -> Markup:
    import pygal
    from pygal.style import Style

    style = Style(font_family=FONTS, background="white", plot_background="white",
                  colors=("#2f6fb0", "#e07b39", "#3a9a5b", "#b03a48", "#7a5cb0"),
                  title_font_size=15, label_font_size=11, major_label_font_size=11,
                  legend_font_size=11, value_font_size=10)
    chart_class = {"bar": pygal.Bar, "line": pygal.Line, "hbar": pygal.HorizontalBar}[kind]
    chart = chart_class(
        title=title, style=style, width=620, height=height, explicit_size=True, js=[],
        disable_xml_declaration=True, show_legend=legend, legend_at_bottom=True,
        print_values=not percent and kind != "line", x_label_rotation=0 if kind != "line"
        else 30, truncate_label=-1, allow_interruptions=True,
        value_formatter=(lambda v: f"{v:.0f}%") if percent else (lambda v: f"{v:g}"),
        range=(0, 100) if percent else None, include_x_axis=True, print_zeroes=False)
    chart.x_labels = labels
    if not percent:  # counts: whole-number ticks, about eight of them
        top = max([v for _, values in series for v in values if v is not None] or [0])
        step = max(1, -(-top // 8))
        chart.y_labels = list(range(0, top + step + 1, step))
    for name, values in series:
        chart.add(name, values)
    # pygal still writes an inert script of its config, and comments naming itself and the
    # date: neither belongs in a page that runs nothing and reads the same next month.
    return Markup(_INERT.sub("", chart.render(is_unicode=True)))


def _of(counts: list[Count]) -> tuple[list[str], list[int]]:
    return [c.label for c in counts], [c.count for c in counts]


def charts(figures: Figures) -> dict[str, Markup]:
    """The report's pictures: the 12-month trends and the month's distributions."""
    months = [p.month[2:] for p in figures.trend]
    out = {
        "trend_repairs": _chart("bar", "报修量（近 12 个月）", labels=months,
                                series=[("报修", [p.repairs for p in figures.trend])]),
        "trend_rates": _chart(
            "line", "完成率与满意度（近 12 个月，%）", labels=months, percent=True, legend=True,
            series=[("完成率", [None if p.completion_rate is None else p.completion_rate * 100
                               for p in figures.trend]),
                    ("满意度", [p.satisfaction for p in figures.trend]),
                    ("满意度目标", [figures.satisfaction_target] * len(figures.trend))]),
    }
    names, values = _of(figures.by_category)
    out["categories"] = _chart("hbar", "报修类别", labels=names, series=[("报修", values)])
    out["ratings"] = _chart("bar", "回访评分分布（1-5 分）",
                            labels=[f"{r} 分" for r in figures.ratings],
                            series=[("评分", list(figures.ratings.values()))])
    names, values = _of(figures.complaint_types)
    out["complaints"] = _chart("hbar", "投诉类型（由多到少）", labels=names[::-1],
                               series=[("投诉", values[::-1])])
    names, values = _of(figures.escalations)
    out["escalations"] = _chart("bar", "超时升级（按级别）", labels=names,
                                series=[("升级", values)])
    return out


def fragment(figures: Figures) -> Markup:
    """The report's body: the web page shows it inside its own layout."""
    return Markup(_env.get_template("monthly_report_body.html.j2").render(
        f=figures, charts=charts(figures)))


def html(figures: Figures) -> str:
    """A whole HTML document, styles inline: it reads offline."""
    return _env.get_template("monthly_report.html.j2").render(f=figures, body=fragment(figures))


def xlsx(figures: Figures) -> bytes:
    """A workbook, a sheet per section; numbers are numbers (rates as fractions shown in %)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    bold = Font(bold=True)
    percent = "0.0%"

    def sheet(title: str, header: list[str], rows: list[list[Any]],
              formats: dict[int, str] | None = None) -> None:
        ws = book.create_sheet(title)
        ws.append(header)
        for cell in ws[1]:
            cell.font = bold
        for row in rows:
            ws.append(row)
        for col, fmt in (formats or {}).items():
            for (cell,) in ws.iter_rows(min_row=2, min_col=col, max_col=col):
                cell.number_format = fmt
        for i, title_ in enumerate(header, start=1):
            ws.column_dimensions[ws.cell(1, i).column_letter].width = max(12, len(title_) * 2 + 4)

    f = figures
    summary = book.active
    assert summary is not None
    summary.title = "概要"
    summary.append(["月度报表", f"{f.community_name}（{f.community or '全部'}）", f.month])
    summary["A1"].font = bold
    rows: list[tuple[str, Any, str | None, Any]] = [
        ("报修量", f.repairs, None, None),
        ("完成量", f.completed, None, None),
        ("完成率", f.completion_rate, percent, None),
        ("平均解决时长（小时）", f.resolve_mean_hours, "0.0", None),
        ("P90 解决时长（小时）", f.resolve_p90_hours, "0.0", None),
        (f"重复报修率（{f.repeat_days} 天内）", f.repeat_rate, percent, f.repeat_target),
        ("返修率", f.rework_rate, percent, None),
        ("一次修复率", f.first_time_fix_rate, percent, None),
        ("满意度（百分制）", f.satisfaction, "0.0", f.satisfaction_target),
        ("满意度基线", f.satisfaction_baseline, "0", None),
        ("平均评分（1-5）", f.rating_mean, "0.00", None),
        ("评分数", f.rating_count, None, None),
        ("投诉量", f.complaints, None, None),
        ("超时升级", f.escalations_total, None, None),
        ("巡查轮次", f.rounds, None, None),
        ("按时完成巡查", f.rounds_on_time, None, None),
        ("巡查按时率", f.rounds_rate, percent, None),
    ]
    summary.append([])
    summary.append(["指标", "数值", "目标"])
    for cell in summary[3]:
        cell.font = bold
    for name, value, fmt, target in rows:
        summary.append([name, value, target])
        if fmt:
            summary.cell(summary.max_row, 2).number_format = fmt
            if target is not None:
                summary.cell(summary.max_row, 3).number_format = fmt
    summary.append([])
    summary.append(["主管改进建议", f.suggestion])
    summary.column_dimensions["A"].width = 26
    summary.column_dimensions["B"].width = 40

    sheet("报修类别", ["类别", "代码", "数量"], [[c.label, c.key, c.count] for c in f.by_category])
    sheet("步骤按时率", ["步骤", "流程", "代码", "计数", "按时", "按时率"],
          [[o.label, o.procedure, o.kind, o.counted, o.on_time, o.rate] for o in f.on_time],
          {6: percent})
    sheet("满意度", ["评分", "次数"], [[r, n] for r, n in f.ratings.items()])
    sheet("投诉类型", ["类型", "代码", "数量"],
          [[c.label, c.key, c.count] for c in f.complaint_types])
    sheet("超时升级", ["级别", "次数"], [[int(c.key), c.count] for c in f.escalations])
    sheet("12个月趋势", ["月份", "报修量", "完成率", "满意度"],
          [[p.month, p.repairs, p.completion_rate, p.satisfaction] for p in f.trend],
          {3: percent, 4: "0.0"})
    sheet("重复报修明细", ["工单号", "房号", "类别", "前次工单", "报修人", "电话"],
          [[r["number"], r["unit"], r["category"], r["previous"], r["reporter"], r["phone"]]
           for r in f.repeat_list])
    sheet("低分回访", ["工单号", "流程", "评分", "报修人", "电话"],
          [[r["number"], r["procedure"], int(r["rating"]), r["reporter"], r["phone"]]
           for r in f.low_ratings])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
