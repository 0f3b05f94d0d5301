"""The building report 楼宇综合情况表 (PROCEDURES.md §7: monthly, on the 28th, to the supervisor
for review): a community's month of inspection rounds, compiled from the record.

Per plan: the rounds made, done and done on time (no checkpoint lapsed); each finding with
what it led to (the repair or emergency opened, the rectification notice and its follow-up,
the vacant unit's defect sent to the warranty centre and its recheck); the month's vacant-unit
defects and rechecks; and what is still open. Written as one HTML page (zh-CN, no script)
under PROPFLOW_HOME/reports/building/, a version per compilation, linked from the approval
step. A case per community and month (BuildingReportIntake): its run asks the 客服主管 to
approve it; one sent back goes to the stewards to correct the rounds' records and is compiled
again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Conflict
from core.policy import get_policy
from core.policy.inspection import COVERS, FINDINGS
from core.settings import get_settings
from core.vocabulary import CaseStatus, Channel, StepStatus
from models import directory
from models.cases import Case, Step
from models.inspection import InspectionRecheck, InspectionRound
from models.intake import Intake, Opening, Place
from models.kpi import Month
from models.org import Community

PROCEDURE = "building_report"
TEMPLATES = Path(__file__).parent / "templates"
_env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                   autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                   lstrip_blocks=True)


@dataclass
class PlanLine:
    plan: str
    label: str
    made: int = 0
    done: int = 0
    on_time: int = 0


@dataclass
class FindingLine:
    round: str
    checkpoint: str
    finding: str
    led_to: str
    still_open: bool


@dataclass
class Report:
    community: str
    community_name: str
    month: str
    compiled_at: str
    plans: list[PlanLine]
    findings: list[FindingLine]
    by_kind: dict[str, int]
    defects: list[dict[str, str]]  # vacant units' defects found this month
    rechecked: list[dict[str, str]]  # earlier defects shown on this month's rounds
    open_items: list[str] = field(default_factory=list)

    @property
    def totals(self) -> PlanLine:
        return PlanLine("", "合计", sum(p.made for p in self.plans),
                        sum(p.done for p in self.plans), sum(p.on_time for p in self.plans))

    def summary(self) -> str:
        t = self.totals
        return (f"巡查 {t.made} 轮，完成 {t.done} 轮，按时 {t.on_time} 轮；发现 "
                f"{len(self.findings)} 项；未结 {len(self.open_items)} 项")


def compile_month(session: Session, community_id: int, month: Month, now: datetime) -> Report:
    policy = get_policy()
    tz = policy.timezone
    place = session.get(Community, community_id)
    assert place is not None
    start, end = month.start(tz), month.end(tz)
    rows = session.execute(select(InspectionRound, Case).join(
        Case, Case.id == InspectionRound.case_id).where(
        InspectionRound.community_id == community_id, InspectionRound.fire_at >= start,
        InspectionRound.fire_at < end).order_by(InspectionRound.fire_at, Case.id)).all()
    ids = [case.id for _, case in rows]
    steps: dict[int, list[Step]] = {}
    for step in session.scalars(select(Step).where(Step.case_id.in_(ids)).order_by(Step.id)):
        steps.setdefault(step.case_id, []).append(step)
    plans = policy.procedures["inspection"].plans
    lines = {key: PlanLine(key, plan.label) for key, plan in plans.items()}
    findings: list[FindingLine] = []
    open_items: list[str] = []
    for round_, case in rows:
        line = lines.setdefault(round_.plan, PlanLine(round_.plan, round_.plan))
        line.made += 1
        own = steps.get(case.id, [])
        done = case.status == CaseStatus.CLOSED and case.outcome == "done"
        if done:
            line.done += 1
            if not any(s.breached for s in own if s.kind == "checkpoint"):
                line.on_time += 1
        else:
            open_items.append(f"巡查 {case.number}（{line.label}）未完成")
        labels = {c["key"]: c["label"] for c in (case.data or {}).get("checkpoints", [])}
        for key, acted in ((case.data or {}).get("acted") or {}).items():
            checkpoint = key.split("#", 1)[1]
            led_to, still_open = _led_to(session, acted, own, checkpoint)
            findings.append(FindingLine(case.number, labels.get(checkpoint, checkpoint),
                                        FINDINGS.get(acted.get("finding", ""), ""), led_to,
                                        still_open))
            if still_open:
                open_items.append(f"{case.number} {labels.get(checkpoint, checkpoint)}：{led_to}")
    defects = [{"unit": r.unit, "defect": r.defect, "found_in": _number(session, r.found_case_id),
                "recheck": _number(session, r.recheck_case_id) if r.recheck_case_id else "下月复查"}
               for r in session.scalars(select(InspectionRecheck).where(
                   InspectionRecheck.community_id == community_id,
                   InspectionRecheck.found_at >= start, InspectionRecheck.found_at < end)
                   .order_by(InspectionRecheck.id))]
    rechecked = [{"unit": r.unit, "defect": r.defect,
                  "found_in": _number(session, r.found_case_id),
                  "recheck": _number(session, r.recheck_case_id)}
                 for r in session.scalars(select(InspectionRecheck).where(
                     InspectionRecheck.community_id == community_id,
                     InspectionRecheck.recheck_case_id.in_(ids)).order_by(InspectionRecheck.id))]
    return Report(
        community=place.code, community_name=place.name, month=str(month),
        compiled_at=now.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M"),
        plans=[line for line in lines.values() if line.made or line.plan in plans],
        findings=findings, by_kind=dict(Counter(f.finding for f in findings)),
        defects=defects, rechecked=rechecked, open_items=open_items)


def _number(session: Session, case_id: int | None) -> str:
    if case_id is None:
        return ""
    return session.scalar(select(Case.number).where(Case.id == case_id)) or ""


def _led_to(session: Session, acted: dict[str, Any], own: list[Step],
            checkpoint: str) -> tuple[str, bool]:
    """What a finding led to, and whether that is still open."""
    finding = acted.get("finding")
    if acted.get("case"):  # a repair or an emergency
        status = session.scalar(select(Case.status).where(Case.number == acted["case"]))
        kind = "应急" if finding == "gas_smell" else "报修"
        closed = status == CaseStatus.CLOSED
        return f"{kind} {acted['case']}（{'已结' if closed else '处理中'}）", not closed
    if acted.get("notice"):
        follow = next((s for s in own if s.key == f"follow_up#{checkpoint}"), None)
        if follow is None or follow.status == StepStatus.WAITING:
            return f"整改通知书 {acted['notice']}（待复查）", True
        rectified = bool(follow.decision and (follow.decision.values or {}).get("rectified"))
        return (f"整改通知书 {acted['notice']}（复查{'已整改' if rectified else '未整改'}）",
                not rectified)
    if acted.get("recheck"):
        return f"报开发商保修中心，下月复查（{acted['recheck']}）", False
    if finding == "renovation_violation":
        return "现场制止并记录", False
    return "", False


def render(report: Report) -> str:
    return _env.get_template("building_report.html.j2").render(
        r=report, covers=COVERS)


def folder() -> Path:
    return get_settings().home / "reports" / "building"


def write(report: Report, version: int) -> Path:
    """The page of this compilation; a later version does not overwrite an earlier one."""
    target = folder() / f"{report.community}-{report.month}-v{version}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(report), encoding="utf-8")
    return target


# --- the case: one per community and month ----------------------------------------------

class BuildingReportIntake(Intake):
    """A community's month of rounds, compiled for the 客服主管's approval (楼宇综合情况表)."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [dict(community="YGHY", month="2026-11")]})

    community: str = Field(description="项目编号，如 YGHY")
    month: str = Field("", description="月份 YYYY-MM（不填：本月）")

    @field_validator("month")
    @classmethod
    def _month(cls, value: str) -> str:
        return str(Month.parse(value)) if value.strip() else ""

    def place(self, session: Session) -> Place:
        return Place(directory.community(session, self.community).id)

    def open(self, session: Session, place: Place, policy: Any, now: datetime) -> Opening:
        month = self.month or str(Month.of(now, get_policy().timezone))
        return Opening(reporter="楼宇综合情况表", description=f"{month} 楼宇综合情况表",
                       category=month, channel=Channel.PATROL, actor="planner",
                       data={"month": month}, audit={"month": month})

    def opened(self, session: Session, case: Case, now: datetime) -> None:
        taken = session.scalar(select(Case.number).where(
            Case.procedure == PROCEDURE, Case.community_id == case.community_id,
            Case.category == case.category, Case.id != case.id))
        if taken:
            raise Conflict(f"month：该项目 {case.category} 的楼宇综合情况表已有工单 {taken}；"
                           "expected another month, or that case", field="month")

    @classmethod
    def details(cls, session: Session, case: Case) -> dict[str, Any]:
        data = case.data or {}
        return {"month": data.get("month"), "report": data.get("report"),
                "approved": data.get("approved")}


def due_communities(session: Session, month: Month) -> list[str]:
    """The communities with no report case for the month yet."""
    have = set(session.scalars(select(Case.community_id).where(
        Case.procedure == PROCEDURE, Case.category == str(month))))
    return [code for cid, code in session.execute(
        select(Community.id, Community.code).order_by(Community.id)) if cid not in have]


__all__ = ["BuildingReportIntake", "Report", "compile_month", "due_communities", "render",
           "write"]
