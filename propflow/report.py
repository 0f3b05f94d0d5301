"""`propflow report monthly` and `propflow report suggest`: the monthly figures on the
terminal, as JSON, or exported to an HTML or XLSX file (models/kpi.py, models/kpi_files.py).
Every export is audited; the web page (propflow/web/report.py) goes through here too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from core.clock import now
from core.errors import PropflowError
from core.policy import get_policy
from models import directory, kpi, kpi_files
from models.db import unit_of_work
from models.kpi import Figures, Month

FORMATS = {"html": "text/html; charset=utf-8",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


@dataclass(frozen=True)
class Export:
    figures: Figures
    format: str
    content: bytes

    @property
    def filename(self) -> str:
        return f"monthly-{self.figures.community or 'all'}-{self.figures.month}.{self.format}"


def format_of(out: str, field: str = "out") -> str:
    fmt = Path(out).suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise PropflowError(f"{field}：{Path(out).name!r} 的扩展名应为 .html 或 .xlsx；expected a "
                            "file name such as report.html or report.xlsx", field=field)
    return fmt


def month_of(text: str | None, field: str = "month") -> Month:
    """The month asked for; none: the month before the current one (the scheduled run's)."""
    if not text:
        return Month.of(now(), get_policy().timezone).shift(-1)
    return Month.parse(text, field=field)


def figures(community: str | None, month: Month, *, viewer: int | str | None = None,
            field: str = "community") -> Figures:
    with unit_of_work(write=False) as session:
        place = _community(session, community, field)
        if viewer is not None:
            kpi.check_reader(session, directory.staff(session, viewer, field="as"), place)
        return kpi.figures(session, place, month, now=now())


def export(community: str | None, month: Month, fmt: str, *, actor: str,
           viewer: int | str | None = None, target: str = "", channel: str = "cli",
           field: str = "community") -> Export:
    """The report as a file's content, rendered from a read-only unit (a writer would hold
    SQLite's lock while the month is counted); the export is in the audit trail before
    the content is given."""
    with unit_of_work(write=False) as session:
        place = _community(session, community, field)
        if viewer is not None:
            kpi.check_reader(session, directory.staff(session, viewer, field="as"), place)
        found = kpi.figures(session, place, month, now=now())
    content = kpi_files.html(found).encode("utf-8") if fmt == "html" else kpi_files.xlsx(found)
    with unit_of_work() as session:
        kpi.audit_export(session, actor=actor, community=found.community, month=month, kind=fmt,
                         now=now(), personal_data=found.personal_data, target=target,
                         channel=channel)
    return Export(found, fmt, content)


def write(community: str | None, month: Month, out: str, *, actor: str,
          viewer: int | str | None = None) -> dict[str, Any]:
    fmt = format_of(out)
    target = Path(out)
    if not target.parent.is_dir():
        raise PropflowError(f"out：目录 {str(target.parent)!r} 不存在；expected a path in an "
                            "existing, writable directory", field="out")
    made = export(community, month, fmt, actor=actor, viewer=viewer, target=str(target.resolve()))
    try:
        target.write_bytes(made.content)
    except OSError as exc:
        raise PropflowError(f"out：无法写入 {str(target)!r}（{exc.strerror}）；expected a path in "
                            "a writable directory", field="out") from None
    return {"out": str(target), "format": fmt, "bytes": len(made.content),
            "community": made.figures.community or "all", "month": made.figures.month}


def suggest(community: str, month: Month, text: str, viewer: int | str,
            channel: str = "cli") -> dict[str, Any]:
    with unit_of_work() as session:
        place = _community(session, community, "community")
        if place is None:
            raise PropflowError("community：改进建议按项目填写；expected a community code such "
                                "as YGHY", field="community")
        person = directory.staff(session, viewer, field="as")
        kpi.check_reader(session, person, place)
        kpi.set_suggestion(session, place, month, text, actor=f"staff:{person.id}", now=now())
    return {"community": community, "month": str(month), "suggestion": text.strip(),
            "channel": channel}


def readable(viewer: int | str) -> list[dict[str, str]]:
    """The communities whose report the person may see, by code; with "all" first for a
    company-level reader."""
    from models import scope
    from models.org import Community

    with unit_of_work(write=False) as session:
        person = directory.staff(session, viewer, field="as")
        out = []
        try:
            kpi.check_reader(session, person, None)
            out.append({"code": "all", "name": "全部项目"})
        except PropflowError:
            pass
        for community in session.query(Community).filter(
                Community.id.in_(scope.community_ids(session, person))).order_by(Community.code):
            try:
                kpi.check_reader(session, person, community)
            except PropflowError:
                continue
            out.append({"code": community.code, "name": community.name})
        return out


def view(community: str | None, month: Month, viewer: int | str) -> tuple[Figures, str]:
    """The report shown on the web page: its figures and body; the view is audited."""
    found = figures(community, month, viewer=viewer)
    body = str(kpi_files.fragment(found))
    with unit_of_work() as session:
        kpi.audit_export(session, actor=f"staff:{viewer}", community=found.community,
                         month=month, kind="view", now=now(),
                         personal_data=found.personal_data, channel="web")
    return found, body


# The span of a training-clock jump whose monthly reports are made: the last month's.
CATCH_UP = timedelta(days=31)


def catch_up(before: datetime, after: datetime) -> list[dict[str, str]]:
    """The training clock moved over the monthly report's fire time (the 1st, 08:00): the
    reports the scheduled deployment would have made, for the month before each. Of a longer
    jump only its last CATCH_UP counts, as for rounds: `clock advance 3650d` took 34 s making
    119 months of reports nobody would read, where one month's says what they would."""
    from zoneinfo import ZoneInfo

    from cronsim import CronSim

    from core.procedures import DUTIES
    from tasks.report import produce_monthly_reports

    spec = DUTIES["monthly_report"]
    tz = ZoneInfo(spec.schedule_timezone)
    made: list[dict[str, str]] = []
    for fire in CronSim(spec.schedule, max(before, after - CATCH_UP).astimezone(tz)):
        if fire > after:
            break
        made += produce_monthly_reports.fn(str(Month.of(fire, str(tz)).shift(-1)))
    return made


def _community(session: Any, code: str | None, field: str) -> Any:
    try:
        return kpi.community_of(session, code)
    except PropflowError as exc:
        raise PropflowError(exc.message, field=field) from None


def table(f: Figures) -> str:
    """The figures as a person reads them on a terminal."""
    pct, num = kpi_files.pct, kpi_files.num
    lines = [f"月度报表 {f.community_name}（{f.community or '全部项目'}） {f.month}  "
             f"（{f.timezone}，生成于 {f.generated_at}）", ""]
    rows = [
        ("报修量", str(f.repairs), ""),
        ("完成率", pct(f.completion_rate), f"{f.completed}/{f.repairs}"),
        ("平均解决时长（小时）", num(f.resolve_mean_hours), f"P90 {num(f.resolve_p90_hours)}"),
        (f"重复报修率（{f.repeat_days} 天）", pct(f.repeat_rate),
         f"目标 < {f.repeat_target * 100:g}%  {f.repeats}/{f.repairs}"),
        ("返修率", pct(f.rework_rate), f"{f.reworked}/{f.worked}"),
        ("一次修复率", pct(f.first_time_fix_rate), f"{f.first_time_fixed}/{f.completed}"),
        ("满意度（百分制）", num(f.satisfaction),
         f"基线 {f.satisfaction_baseline:g} → 目标 {f.satisfaction_target:g}；"
         f"评分 {f.rating_count} 次"),
        ("投诉量", str(f.complaints), ""),
        ("超时升级", str(f.escalations_total), ""),
        ("巡查按时", f"{f.rounds_on_time}/{f.rounds}" if f.rounds else "本月无巡查",
         pct(f.rounds_rate) if f.rounds else ""),
    ]
    width = max(_width(r[0]) for r in rows) + 2
    lines += [f"{name}{' ' * (width - _width(name))}{value:>8}  {note}".rstrip()
              for name, value, note in rows]
    lines += ["", "报修类别：" + ("，".join(f"{c.label} {c.count}" for c in f.by_category) or "无"),
              "评分分布：" + "，".join(f"{r}分 {n}" for r, n in f.ratings.items()),
              "投诉类型：" + ("，".join(f"{c.label} {c.count}" for c in f.complaint_types)
                           or "无"),
              "升级级别：" + ("，".join(f"{c.label} {c.count}" for c in f.escalations) or "无"),
              "步骤按时率：" + ("，".join(f"{o.label} {pct(o.rate)}（{o.on_time}/{o.counted}）"
                                     for o in f.on_time) or "无"),
              "改进建议：" + (f.suggestion or "（未填写）")]
    return "\n".join(lines)


def _width(text: str) -> int:
    """Columns on a terminal: a CJK character takes two."""
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)
