"""The manager's reception day (接访日, PROCEDURES.md §6): when it is, and a visitor's matter.

Monthly, on the first Friday (the policy's `reception_day`), 10:00-12:00; a day that is not
a working day moves to the next working day of China's statutory calendar (make-up working
days included) with the policy's overrides. Residents are told a week before. Each matter a
visitor brings (接访来访登记表) is a case: signed off, accepted with a handling department and
a deadline, followed up until done, the result told to the visitor, a satisfaction check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import now as clock_now
from core.errors import PropflowError
from core.policy import Policy, ReceptionDay, get_policy
from core.policy import Procedure as PolicySection
from core.vocabulary import Channel, Role
from models import broadcast, directory, limits, notices
from models.cases import Case
from models.forms import AnswerForm, ApprovalForm, Form, Short
from models.intake import Intake, Opening, Place
from models.org import Community
from models.outbox import Notification, audit
from models.validate import Phone, choice, text


@dataclass(frozen=True)
class Day:
    scheduled: date  # the first Friday
    held: date  # the next working day when that is a holiday

    @property
    def postponed(self) -> bool:
        return self.held != self.scheduled


def _rule(policy: Policy) -> ReceptionDay:
    return policy.procedures["reception"].reception_day or ReceptionDay()


def day_of(policy: Policy, year: int, month: int) -> Day:
    rule = _rule(policy)
    first = date(year, month, 1)
    scheduled = first + timedelta(days=(rule.weekday - first.isoweekday()) % 7)
    calendar = policy.business_calendar()
    held = scheduled
    while not calendar.is_workday(held):
        held += timedelta(days=1)
    return Day(scheduled, held)


def days(policy: Policy, year: int) -> list[Day]:
    return [day_of(policy, year, month) for month in range(1, 13)]


def next_day(policy: Policy, today: date) -> Day:
    """The first reception day held on or after today."""
    year, month = today.year, today.month
    while True:
        found = day_of(policy, year, month)
        if found.held >= today:
            return found
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def hours(policy: Policy, held: date) -> tuple[datetime, datetime]:
    rule, zone = _rule(policy), ZoneInfo(policy.timezone)
    return (datetime.combine(held, rule.start, zone).astimezone(UTC),
            datetime.combine(held, rule.end, zone).astimezone(UTC))


def local_today(policy: Policy, now: datetime) -> date:
    return now.astimezone(ZoneInfo(policy.timezone)).date()


# --- telling residents a week before -----------------------------------------------------

def _notice_key(community: Community, held: date) -> str:
    return f"reception:{community.code}:{held.isoformat()}"


def announce_due(session: Session, now: datetime) -> list[dict[str, str]]:
    """Every community whose next reception day is within the notice period and not yet
    announced: its households and its project manager are told. Idempotent (one summary row
    per community and day), so a daily schedule may run it any number of times."""
    policy = get_policy()
    today = local_today(policy, now)
    upcoming = next_day(policy, today)
    notice = _rule(policy).notice
    if upcoming.held - today > timedelta(days=notice.days):
        return []
    start, end = hours(policy, upcoming.held)
    day: dict[str, Any] = {"day": upcoming.held.isoformat(), "start": notices.local(start)[-5:],
                           "end": notices.local(end)[-5:], "postponed": upcoming.postponed,
                           "scheduled": upcoming.scheduled.isoformat()}
    told = []
    for community in session.scalars(select(Community).order_by(Community.id)):
        key = _notice_key(community, upcoming.held)
        if session.scalar(select(Notification.id).where(
                Notification.dedupe_key == f"{key}|broadcast")):
            continue
        ctx = {**day, "community_name": community.name}
        # Not a case: a stand-in, never added to the session, lends the broadcast its
        # community and labels; the rows carry no case.
        about = Case(number=f"JF-{upcoming.held:%Y%m%d}", procedure="reception",
                     community_id=community.id, reporter_name="", reporter_phone="",
                     description="经理接访日", data={})
        households = broadcast.to_residents(session, about, "announced", key=key, now=now,
                                            **ctx)
        notices.tell(session, case=about, event="reception_day", key=f"{key}|manager",
                     now=now, to=notices.role_recipients(session, about,
                                                          Role.PROJECT_MANAGER), **ctx)
        audit(session, at=now, actor="schedule", action="reception_day_announced",
              community=community.code, day=upcoming.held.isoformat(), households=households)
        told.append({"community": community.code, "day": upcoming.held.isoformat(),
                     "households": str(households)})
    return told


# --- a visitor's matter ------------------------------------------------------------------

class MatterIntake(Intake):
    """One matter a visitor brings to the reception day (接访来访登记表)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [dict(
        community="YGHY", visitor="业主王五", phone="13900139000",
        matter="东门夜间照明不足，老人出行不便", department="engineering")]})

    community: str = Field(description="项目编号，如 YGHY")
    visitor: Annotated[str, text("the visitor's name", limits.NAME)] = Field(
        description="来访人")
    phone: Phone = Field(description="联系电话（大陆手机号）")
    matter: Annotated[str, text("what the visitor raises", limits.DESCRIPTION)] = Field(
        description="来访事项")
    department: Annotated[str, choice(lambda policy: policy.categories)] = Field(
        description="责任部门 customer_service|engineering|security|cleaning|finance")
    unit: str | None = Field(None, description="来访人房号（可选），如 1-2-301")
    day: str = Field("", description="接访日 YYYY-MM-DD；默认下一个接访日")

    def place(self, session: Session) -> Place:
        if self.unit:
            found = directory.unit(session, self.unit, self.community)
            return Place(found.community_id, found)
        return Place(directory.community(session, self.community).id)

    def open(self, session: Session, place: Place, policy: PolicySection,
             now: datetime) -> Opening:
        whole = get_policy()
        upcoming = next_day(whole, local_today(whole, now))
        held = upcoming.held
        if self.day:
            held = _reception_date(whole, self.day, upcoming.held)
        return Opening(
            reporter=self.visitor, phone=self.phone, description=self.matter,
            category=self.department, channel=Channel.FRONT_DESK, actor="front_desk",
            data={"day": held.isoformat(), "department": self.department,
                  "department_role": department_role(self.department)},
            audit={"day": held.isoformat(), "department": self.department},
        )


def _reception_date(policy: Policy, text_: str, upcoming: date) -> date:
    try:
        wanted = date.fromisoformat(text_.strip())
    except ValueError:
        raise PropflowError(f"day：{text_!r} 不是日期；expected YYYY-MM-DD, e.g. "
                            f"{upcoming.isoformat()}", field="day") from None
    if wanted < upcoming or day_of(policy, wanted.year, wanted.month).held != wanted:
        raise PropflowError(f"day：{wanted.isoformat()} 不是即将到来的接访日；expected "
                            f"{upcoming.isoformat()} or a later one from `propflow reception "
                            "days`", field="day")
    return wanted


def department_role(key: str) -> str:
    """A department key of the policy's reception categories -> the role that answers."""
    found = get_policy().procedures["reception"].categories[key]
    return found.department or Role.CS_SUPERVISOR


def end_of(day: date) -> datetime:
    """A deadline date: the end of office hours that day (the policy's business hours)."""
    policy = get_policy()
    return datetime.combine(day, policy.business_hours.end,
                            ZoneInfo(policy.timezone)).astimezone(UTC)


# --- forms -------------------------------------------------------------------------------

def _department(value: str) -> str:
    known = get_policy().procedures["reception"].categories
    if value not in known:
        raise ValueError(f"department: {value!r} 不是责任部门；expected one of {list(known)}")
    return value


def _not_past(value: date) -> date:
    policy = get_policy()
    if value < local_today(policy, clock_now()):
        raise ValueError(f"deadline: {value.isoformat()} 已过；expected today or a later date")
    return value


NotPast = Annotated[date, AfterValidator(_not_past)]


class SignoffForm(ApprovalForm):
    refusal: ClassVar[str] = "不同意受理"
    approved: bool = Field(description="是否签字同意受理")


class AcceptMatterForm(AnswerForm):
    """The receiving manager: accepted, with a handling opinion, department and deadline."""

    refusal: ClassVar[str] = "不予受理"
    accepted: bool = Field(description="是否受理")
    opinion: Short = Field("", description="处理意见")
    department: str = Field("", description="办理部门 customer_service|engineering|security|"
                                            "cleaning|finance")
    deadline: NotPast | None = Field(None, description="办结期限 YYYY-MM-DD")
    reason: Short = ""

    @field_validator("department")
    @classmethod
    def _known(cls, value: str) -> str:
        return _department(value) if value else value

    @model_validator(mode="after")
    def _complete(self) -> AcceptMatterForm:
        if self.accepted and not (self.opinion and self.department and self.deadline):
            raise ValueError("opinion, department, deadline: 受理时须填写处理意见、办理部门和办结"
                             "期限 (required when accepted=true)")
        return self


class HandleForm(Form):
    result: Short = Field(min_length=1, description="办理情况")
    done: bool = Field(description="是否已办结")


class FollowUpForm(Form):
    done: bool = Field(description="跟进核实：是否已办结")
    note: Short = ""
    new_deadline: NotPast | None = Field(None, description="未办结时的新期限 YYYY-MM-DD")

    @model_validator(mode="after")
    def _deadline_when_open(self) -> FollowUpForm:
        if not self.done and self.new_deadline is None:
            raise ValueError("new_deadline: 未办结时须给出新期限 (required when done=false)")
        return self

