"""The monthly figures 月度报表 (PROCEDURES.md §8, §10): a community's month of cases, or
every community's, counted by the database with a few set-based aggregates (no case is
loaded into Python), so that a month of 100,000 cases takes well under the 5 s the issue
allows (bench/monthly_report.py).

A month is the policy's time zone's (Asia/Shanghai): 2026-11 runs from 2026-11-01 00:00
to 2026-12-01 00:00 there. What each figure counts is written beside it below and in the
README, "Monthly report 月度报表".
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
    and_,
    case,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
)
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

from core import labels
from core.errors import Forbidden, PropflowError
from core.faults import mask
from core.policy import get_policy
from core.vocabulary import Role, StepStatus
from models import directory
from models.cases import Case, Decision, Escalation, Step
from models.db import Base, UTCDateTime
from models.org import Community, Staff, Unit
from models.outbox import audit

# Who sees the report and edits its suggestion: the community's management and the company.
READERS = (Role.PROJECT_MANAGER, Role.CS_SUPERVISOR, Role.CS_DIRECTOR, Role.COMPANY_CS)
RATING_STEPS = ("callback", "phone_callback", "satisfaction")  # CallbackForm's rating 1-5
ROUNDS = "inspection"  # the procedure whose cases are rounds (巡查), one step per checkpoint
TREND_MONTHS = 12
DETAIL_ROWS = 200  # at most this many rows in each list of the report
_MONTH = re.compile(r"(\d{4})-(\d{2})")


class ReportSuggestion(Base):
    """The supervisor's improvement suggestion for one community's month (edits audited)."""

    __tablename__ = "report_suggestions"
    __table_args__ = (UniqueConstraint("community_id", "month"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    month: Mapped[str] = mapped_column(String(7))  # 2026-11
    text: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str, field: str = "month") -> Month:
        found = _MONTH.fullmatch(text.strip()) if isinstance(text, str) else None
        if not found or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 2000:
            raise PropflowError(f"{field}：{text!r} 不是有效月份；expected a month such as "
                                "2026-11 (YYYY-MM)", field=field)
        return cls(int(found.group(1)), int(found.group(2)))

    @classmethod
    def of(cls, at: datetime, tz: str) -> Month:
        local = at.astimezone(ZoneInfo(tz))
        return cls(local.year, local.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def shift(self, months: int) -> Month:
        n = self.year * 12 + self.month - 1 + months
        return Month(n // 12, n % 12 + 1)

    def start(self, tz: str) -> datetime:
        """Midnight of its first day in the zone, as UTC."""
        return datetime(self.year, self.month, 1, tzinfo=ZoneInfo(tz)).astimezone(UTC)

    def end(self, tz: str) -> datetime:
        return self.shift(1).start(tz)


@dataclass
class Count:
    key: str
    label: str
    count: int


@dataclass
class OnTime:
    procedure: str
    kind: str
    label: str
    counted: int  # settled (decided or expired), or still waiting past due
    on_time: int  # decided by its due time
    rate: float | None


@dataclass
class TrendPoint:
    month: str
    repairs: int
    completion_rate: float | None
    satisfaction: float | None  # of 100


@dataclass
class Figures:
    month: str
    community: str | None  # its code; None: every community
    community_name: str
    timezone: str
    generated_at: str
    repairs: int = 0
    by_category: list[Count] = field(default_factory=list)
    completed: int = 0
    completion_rate: float | None = None
    on_time: list[OnTime] = field(default_factory=list)
    resolved: int = 0
    resolve_mean_hours: float | None = None
    resolve_p90_hours: float | None = None
    repeat_days: int = 30
    repeats: int = 0
    repeat_rate: float | None = None
    repeat_target: float = 0.05
    worked: int = 0
    reworked: int = 0
    rework_rate: float | None = None
    first_time_fixed: int = 0
    first_time_fix_rate: float | None = None
    ratings: dict[int, int] = field(default_factory=dict)
    rating_count: int = 0
    rating_mean: float | None = None
    satisfaction: float | None = None  # of 100: the mean rating of 5, times 20
    satisfaction_baseline: float = 80
    satisfaction_target: float = 90
    complaints: int = 0
    complaint_types: list[Count] = field(default_factory=list)
    escalations: list[Count] = field(default_factory=list)  # key: the level reached
    escalations_total: int = 0
    rounds: int = 0
    rounds_on_time: int = 0
    rounds_rate: float | None = None
    suggestion: str = ""
    trend: list[TrendPoint] = field(default_factory=list)
    repeat_list: list[dict[str, str]] = field(default_factory=list)
    low_ratings: list[dict[str, str]] = field(default_factory=list)
    personal_data: bool = False  # whether the lists carry phone numbers unmasked

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _seconds(session: Session, later: Any, earlier: Any) -> ColumnElement[Any]:
    """Seconds from earlier to later, in the database."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return func.extract("epoch", later - earlier)


def _days_before(session: Session, at: Any, days: int) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "sqlite":
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff'; datetime() gives the same without fraction.
        return func.datetime(at, f"-{days} days")
    before: ColumnElement[Any] = at - literal(timedelta(days=days))
    return before


def _bucket(column: Any, bounds: list[datetime]) -> ColumnElement[int]:
    """Which of the months bounded by `bounds` (n + 1 instants) the time falls in; n if none."""
    return case(*[(column < b, i - 1) for i, b in enumerate(bounds) if i], else_=len(bounds) - 1)


def check_reader(session: Session, person: Staff, community: Community | None,
                 field: str = "as") -> None:
    """Refuse anyone but the READERS of the community (every community: of the company)."""
    if not person.active:
        raise Forbidden(f"{field}：员工 {person.id} 已离职；expected an active member of staff",
                        field=field)
    held = {r.role for r in person.roles
            if r.community_id is None or (community is not None
                                          and r.community_id == community.id)}
    if not held & set(READERS):
        where = f"项目 {community.code}" if community else "全部项目（公司级）"
        raise Forbidden(f"{field}：员工 {person.id} 无权查看{where}的月度报表；expected one of "
                        f"the roles {[str(r) for r in READERS]} there", field=field)


def community_of(session: Session, code: str | None) -> Community | None:
    """The community named by its code; None for every community. Unknown: a clear error."""
    return None if code in (None, "", "all") else directory.community(session, str(code))


def figures(session: Session, community: Community | None, month: Month, *,
            now: datetime, personal_data: bool | None = None) -> Figures:
    """The month's figures. `personal_data` (default: the policy's reports.personal_data)
    says whether the lists carry reporters' phone numbers, or them masked."""
    policy = get_policy()
    tz, rules, lang = policy.timezone, policy.reports, policy.lang
    show = rules.personal_data if personal_data is None else personal_data
    start, end = month.start(tz), month.end(tz)
    # Every community as the list of them, not no condition: the indexes on cases lead with
    # the procedure and the community, so a month is read as ranges either way.
    here: ColumnElement[bool] = (Case.community_id == community.id) if community else \
        Case.community_id.in_(list(session.scalars(select(Community.id))))
    out = Figures(month=str(month), community=community.code if community else None,
                  community_name=community.name if community else "全部项目", timezone=tz,
                  generated_at=now.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M"),
                  repeat_days=rules.repeat_days, repeat_target=rules.repeat_target,
                  satisfaction_baseline=rules.satisfaction_baseline,
                  satisfaction_target=rules.satisfaction_target, personal_data=show)
    received = and_(here, Case.created_at >= start, Case.created_at < end)
    repair = and_(Case.procedure == "repair", received)

    # Repairs received in the month, by category; completed: done (closed as "done") by the
    # month's end.
    categories = policy.procedures["repair"].categories
    rows = session.execute(select(Case.category, func.count()).where(repair)
                           .group_by(Case.category)).all()
    out.by_category = sorted((Count(k or "", categories[k].label if k in categories else k or "—",
                                    n) for k, n in rows), key=lambda c: (-c.count, c.key))
    out.repairs = sum(c.count for c in out.by_category)
    done = and_(Case.outcome == "done", Case.closed_at < end)
    out.completed = session.scalar(select(func.count()).where(repair, done)) or 0
    out.completion_rate = _rate(out.completed, out.repairs)

    _on_time(session, out, received, end, lang)
    _resolve_times(session, out, repair, done)
    _repeats(session, out, repair, rules.repeat_days, show)
    _rework(session, out, repair, done)
    bounds = _bounds(month, tz)
    ratings = _rating_counts(session, here, bounds)
    _ratings(session, out, here, start, end, show, ratings.get(TREND_MONTHS - 1, {}))

    complaint_categories = policy.procedures["complaint"].categories
    rows = session.execute(select(Case.category, func.count())
                           .where(Case.procedure == "complaint", received)
                           .group_by(Case.category)).all()
    out.complaint_types = sorted(
        (Count(k or "", complaint_categories[k].label if k in complaint_categories else k or "—",
               n) for k, n in rows), key=lambda c: (-c.count, c.key))
    out.complaints = sum(c.count for c in out.complaint_types)

    levels = session.execute(
        select(Escalation.level, func.count()).join(Step, Escalation.step_id == Step.id)
        .join(Case, Step.case_id == Case.id)
        .where(here, Escalation.lapsed_at >= start, Escalation.lapsed_at < end)
        .group_by(Escalation.level).order_by(Escalation.level)).all()
    out.escalations = [Count(str(level), f"第 {level} 级", n) for level, n in levels]
    out.escalations_total = sum(c.count for c in out.escalations)

    _rounds(session, out, received)
    if community is not None:
        found = suggestion(session, community.id, month)
        out.suggestion = found if show else mask(found)  # written before a policy change
    out.trend = trend(session, here, month, tz, ratings)
    return out


def _on_time(session: Session, out: Figures, received: ColumnElement[bool], end: datetime,
             lang: str) -> None:
    """Per procedure and step kind, of the steps of the month's cases: those settled, or
    still waiting past due, and of them those decided by their due time (never breached)."""
    counted = or_(Step.status.in_([StepStatus.DECIDED, StepStatus.LAPSED]),
                  and_(Step.status == StepStatus.WAITING, Step.due_at < end))
    in_time = and_(Step.status == StepStatus.DECIDED, not_(Step.breached))
    rows = session.execute(
        select(Case.procedure, Step.kind, func.count(), func.sum(case((in_time, 1), else_=0)))
        .join(Case, Step.case_id == Case.id).where(received, counted)
        .group_by(Case.procedure, Step.kind).order_by(Case.procedure, Step.kind)).all()
    for procedure, kind, n, ok in rows:
        label = labels.step(procedure, kind, lang)
        out.on_time.append(OnTime(procedure, kind, f"{labels.procedure(procedure, lang)}·{label}",
                                  n, int(ok or 0), _rate(int(ok or 0), n)))


def _resolve_times(session: Session, out: Figures, repair: ColumnElement[bool],
                   done: ColumnElement[bool]) -> None:
    """From receipt to the last completion registered (完工登记), of the repairs done."""
    # Each done repair's last completion: the month's done repairs' steps only, found by
    # their case (steps.case_id is indexed), grouped once.
    finished = (select(Step.case_id, func.max(Step.decided_at).label("at"))
                .where(Step.case_id.in_(select(Case.id).where(repair, done)),
                       Step.kind == "complete", Step.status == StepStatus.DECIDED)
                .group_by(Step.case_id).subquery("f"))
    took = _seconds(session, finished.c.at, Case.created_at).label("took")
    times = select(took).join(finished, finished.c.case_id == Case.id).subquery("t")
    # One pass: each time's rank, their count and mean; p90 by nearest rank is the first
    # time whose rank reaches 90 % of the count.
    ranked = select(times.c.took, func.row_number().over(order_by=times.c.took).label("rank"),
                    func.count().over().label("n"), func.avg(times.c.took).over().label("mean")
                    ).subquery("r")
    found = session.execute(select(ranked.c.took, ranked.c.n, ranked.c.mean)
                            .where(ranked.c.rank >= 0.9 * ranked.c.n)
                            .order_by(ranked.c.rank).limit(1)).first()
    if found is None:
        return
    p90, n, mean = found
    out.resolved = int(n)
    out.resolve_mean_hours = float(mean) / 3600
    out.resolve_p90_hours = float(p90) / 3600


def _repeats(session: Session, out: Figures, repair: ColumnElement[bool], days: int,
             show: bool) -> None:
    """重复报修: a repair of the month whose unit reported the same category within `days`
    before it."""
    earlier = aliased(Case)
    before = and_(earlier.procedure == "repair", earlier.unit_id == Case.unit_id,
                  earlier.category == Case.category, earlier.created_at < Case.created_at,
                  earlier.created_at >= _days_before(session, Case.created_at, days))
    repeat = and_(repair, Case.unit_id.is_not(None), exists().where(before))
    out.repeats = session.scalar(select(func.count()).where(repeat)) or 0
    out.repeat_rate = _rate(out.repeats, out.repairs)
    previous = (select(earlier.number).where(before).order_by(earlier.created_at.desc())
                .limit(1).scalar_subquery())
    rows = session.execute(
        select(Case.number, Unit.code, Case.category, Case.reporter_name, Case.reporter_phone,
               previous).join(Unit, Unit.id == Case.unit_id).where(repeat)
        .order_by(Case.created_at).limit(DETAIL_ROWS)).all()
    categories = get_policy().procedures["repair"].categories
    out.repeat_list = [
        {"number": number, "unit": unit, "category": categories[c].label if c in categories
         else c or "", "previous": prev or "", "reporter": name,
         "phone": phone if show else mask(phone)}
        for number, unit, c, name, phone, prev in rows]


def _rework(session: Session, out: Figures, repair: ColumnElement[bool],
            done: ColumnElement[bool]) -> None:
    """返修 (rework): the re-inspection after the owner refused the work ordered it redone,
    so the repair has a second completion round (complete#2). Of the month's repairs whose
    work was completed at least once. First-time fix: of those done, the owner accepted the
    first completion (no re-inspection at all)."""
    completed_once = exists().where(Step.case_id == Case.id, Step.kind == "complete",
                                    Step.status == StepStatus.DECIDED)
    again = exists().where(Step.case_id == Case.id, Step.kind == "complete",
                           Step.key != "complete#1", not_(Step.key.like("complete#1~%")))
    disputed = exists().where(Step.case_id == Case.id, Step.kind == "reinspection")
    out.worked = session.scalar(select(func.count()).where(repair, completed_once)) or 0
    out.reworked = session.scalar(select(func.count()).where(repair, again)) or 0
    out.rework_rate = _rate(out.reworked, out.worked)
    out.first_time_fixed = session.scalar(
        select(func.count()).where(repair, done, not_(disputed))) or 0
    out.first_time_fix_rate = _rate(out.first_time_fixed, out.completed)


def _rating_of() -> ColumnElement[int]:
    rating: ColumnElement[int] = Decision.values["rating"].as_integer()
    return rating


def _rating_counts(session: Session, here: ColumnElement[bool],
                   bounds: list[datetime]) -> dict[int, dict[int, int]]:
    """The callbacks' ratings (1-5) given in each month bounded by `bounds`: {month index:
    {rating: count}}, by one grouped query. Steps decided in the window are found first, so
    only theirs of the decisions are read (the rating is inside a JSON column)."""
    rating = _rating_of()
    month = _bucket(Step.decided_at, bounds).label("m")
    rows = session.execute(
        select(month, rating, func.count()).select_from(Step)
        .join(Decision, Decision.step_id == Step.id).join(Case, Step.case_id == Case.id)
        .where(here, Step.kind.in_(RATING_STEPS), Step.status == StepStatus.DECIDED,
               Step.decided_at >= bounds[0], Step.decided_at < bounds[-1],
               rating.is_not(None)).group_by(month, rating)).all()
    out: dict[int, dict[int, int]] = {}
    for m, value, n in rows:
        if value is not None and 1 <= int(value) <= 5:
            counts = out.setdefault(int(m), dict.fromkeys(range(1, 6), 0))
            counts[int(value)] += n
    return out


def _ratings(session: Session, out: Figures, here: ColumnElement[bool], start: datetime,
             end: datetime, show: bool, counts: dict[int, int]) -> None:
    """The month's ratings (given in it, of any procedure's cases) and the low ones."""
    out.ratings = {**dict.fromkeys(range(1, 6), 0), **counts}
    out.rating_count = sum(out.ratings.values())
    if out.rating_count:
        out.rating_mean = sum(r * n for r, n in out.ratings.items()) / out.rating_count
        out.satisfaction = out.rating_mean * 20
    low = get_policy().procedures["repair"].complaint_rating
    if not any(out.ratings[r] for r in range(1, low + 1)):
        return
    rating = _rating_of()
    low_rows = session.execute(
        select(Case.number, Case.procedure, rating, Case.reporter_name, Case.reporter_phone)
        .select_from(Step).join(Decision, Decision.step_id == Step.id)
        .join(Case, Step.case_id == Case.id)
        .where(here, Step.kind.in_(RATING_STEPS), Step.status == StepStatus.DECIDED,
               Step.decided_at >= start, Step.decided_at < end, rating <= low)
        .order_by(Step.decided_at).limit(DETAIL_ROWS)).all()
    lang = get_policy().lang
    out.low_ratings = [{"number": number, "procedure": labels.procedure(procedure, lang),
                        "rating": str(value), "reporter": name,
                        "phone": phone if show else mask(phone)}
                       for number, procedure, value, name, phone in low_rows]


def _rounds(session: Session, out: Figures, received: ColumnElement[bool]) -> None:
    """Rounds (巡查, the inspection procedure's cases) of the month, and those whose every
    checkpoint step was decided by its due time. None yet: 0 of 0."""
    late = exists().where(Step.case_id == Case.id, Step.status != StepStatus.CANCELLED,
                          or_(Step.status != StepStatus.DECIDED, Step.breached))
    rounds = and_(Case.procedure == ROUNDS, received)
    out.rounds = session.scalar(select(func.count()).where(rounds)) or 0
    out.rounds_on_time = session.scalar(select(func.count()).where(rounds, not_(late))) or 0
    out.rounds_rate = _rate(out.rounds_on_time, out.rounds)


def _bounds(month: Month, tz: str, months: int = TREND_MONTHS) -> list[datetime]:
    """The starts of the months up to this one, and this one's end."""
    first = month.shift(1 - months)
    return [first.shift(i).start(tz) for i in range(months + 1)]


def trend(session: Session, here: ColumnElement[bool], month: Month, tz: str,
          ratings: dict[int, dict[int, int]], months: int = TREND_MONTHS) -> list[TrendPoint]:
    """The months up to this one: repairs received, those done within their month (one
    grouped query), and the satisfaction of the ratings given (`ratings`, by month)."""
    first = month.shift(1 - months)
    names = [str(first.shift(i)) for i in range(months)]
    bounds = _bounds(month, tz, months)
    got = _bucket(Case.created_at, bounds).label("m")
    closed = _bucket(Case.closed_at, bounds)
    rows = session.execute(
        select(got, func.count(), func.sum(case((and_(Case.outcome == "done", closed == got), 1),
                                                else_=0)))
        .where(here, Case.procedure == "repair", Case.created_at >= bounds[0],
               Case.created_at < bounds[-1]).group_by(got)).all()
    repairs = {int(m): (int(n), int(ok or 0)) for m, n, ok in rows}
    points = []
    for i, name in enumerate(names):
        n, ok = repairs.get(i, (0, 0))
        given = ratings.get(i, {})
        rated = sum(given.values())
        score = sum(r * c for r, c in given.items()) / rated * 20 if rated else None
        points.append(TrendPoint(name, n, _rate(ok, n), score))
    return points


def suggestion(session: Session, community_id: int, month: Month) -> str:
    return session.scalar(select(ReportSuggestion.text).where(
        ReportSuggestion.community_id == community_id,
        ReportSuggestion.month == str(month))) or ""


SUGGESTION_MAX = 2000


def set_suggestion(session: Session, community: Community, month: Month, text: str, *,
                   actor: str, now: datetime) -> None:
    """The supervisor's improvement suggestion for the month: one per community and month,
    replaced by an edit; every edit is in the audit trail with its text."""
    text = text.strip()
    if not get_policy().reports.personal_data and mask(text) != text:
        raise PropflowError("suggestion：改进建议中请勿填写电话或身份证号码（导出不含个人号码）；"
                            "expected text without phone or ID numbers", field="suggestion")
    if len(text) > SUGGESTION_MAX:
        raise PropflowError(f"suggestion：改进建议过长（{len(text)} 字）；expected at most "
                            f"{SUGGESTION_MAX} characters", field="suggestion")
    found = session.scalars(select(ReportSuggestion).where(
        ReportSuggestion.community_id == community.id,
        ReportSuggestion.month == str(month))).first()
    before = found.text if found else ""
    if found is None:
        session.add(ReportSuggestion(community_id=community.id, month=str(month), text=text,
                                     updated_by=actor, updated_at=now))
    else:
        found.text, found.updated_by, found.updated_at = text, actor, now
    audit(session, at=now, actor=actor, action="report_suggestion_set",
          community=community.code, month=str(month), text=text, before=before)
    session.flush()


def audit_export(session: Session, *, actor: str, community: str | None, month: Month,
                 kind: str, now: datetime, personal_data: bool, target: str = "",
                 channel: str = "cli") -> None:
    """Every export of the report (a file, a page shown, a download) leaves a row."""
    audit(session, at=now, actor=actor, action="report_exported",
          community=community or "all", month=str(month), format=kind,
          personal_data=personal_data, target=target, channel=channel)

