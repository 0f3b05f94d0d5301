"""The monthly report's scheduled side effects: files written, the export audited, the
project manager told. Idempotent: a community's month is reported once."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy import select

from core.clock import now
from core.policy import get_policy
from core.settings import get_settings
from core.vocabulary import Role
from models import directory, kpi, kpi_files, notices
from models.db import unit_of_work
from models.org import Community
from models.outbox import Notification, notify
from tasks.retries import db_task

EVENT = "monthly_report"


def folder() -> Path:
    """Where the scheduled reports are written: PROPFLOW_HOME/reports/."""
    return get_settings().home / "reports"


def _key(code: str, month: kpi.Month) -> str:
    return f"{EVENT}:{code}:{month}"


@db_task(name="monthly-reports")
def produce_monthly_reports(month: str = "") -> list[dict[str, str]]:
    """Each community's report of the month (default: the month before this one) as HTML and
    XLSX under PROPFLOW_HOME/reports/, each export audited, and its project managers told
    with the page's link and the files' paths. A community already told is skipped."""
    policy = get_policy()
    asked = kpi.Month.parse(month) if month else kpi.Month.of(now(), policy.timezone).shift(-1)
    with unit_of_work(write=False) as session:
        codes = list(session.scalars(select(Community.code).order_by(Community.code)))
    made = []
    for code in codes:
        told = _report(code, asked)
        if told is not None:
            made.append(told)
    return made


def _report(code: str, month: kpi.Month) -> dict[str, str] | None:
    with unit_of_work(write=False) as session:
        if session.scalar(select(Notification.id).where(
                Notification.dedupe_key.like(f"{_key(code, month)}|%")).limit(1)):
            return None
        community = directory.community(session, code)
        found = kpi.figures(session, community, month, now=now())
    out = folder()
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / f"monthly-{code}-{month}.html",
             "xlsx": out / f"monthly-{code}-{month}.xlsx"}
    paths["html"].write_text(kpi_files.html(found), encoding="utf-8")
    paths["xlsx"].write_bytes(kpi_files.xlsx(found))
    link = f"{get_settings().link_base}/reports/monthly?" + urlencode(
        {"community": code, "month": str(month)})
    policy = get_policy()
    with unit_of_work() as session:
        community = directory.community(session, code)
        for fmt, path in paths.items():
            kpi.audit_export(session, actor="schedule", community=code, month=month, kind=fmt,
                             now=now(), personal_data=found.personal_data,
                             target=str(path.resolve()), channel="schedule")
        managers = [notices.staff_recipient(p) for p in
                    directory.people_in_role(session, community.id, Role.PROJECT_MANAGER)]
        notify(session, procedure="report", event=EVENT, to=managers, key=_key(code, month),
               now=now(), case_id=None, lang=policy.lang, routes=policy.routes,
               channel_kinds={n: str(c.get("kind")) for n, c in policy.channels.items()},
               sms=policy.sms, context=dict(
                   community=code, community_name=community.name, month=str(month),
                   repairs=found.repairs, complaints=found.complaints,
                   completion_rate=kpi_files.pct(found.completion_rate),
                   repeat_rate=kpi_files.pct(found.repeat_rate),
                   repeat_target=kpi_files.pct(found.repeat_target, 0),
                   satisfaction=kpi_files.num(found.satisfaction),
                   satisfaction_target=f"{found.satisfaction_target:g}", page=link,
                   html_path=str(paths["html"].resolve()),
                   xlsx_path=str(paths["xlsx"].resolve())))
    return {"community": code, "month": str(month), "html": str(paths["html"]),
            "xlsx": str(paths["xlsx"]), "told": str(len(managers))}
