"""VIP visit (参观接待, PROCEDURES.md §5, §10): the booking, its class, and the countdown.

Preparation is a countdown to the arrival: each step falls due at a fixed time before it
(the policy's `countdown`), and the class of the visit decides which steps it takes (the
policy's `classes`). A visit outside office hours first needs the project manager's
approval.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, ConfigDict, Field, ValidationInfo
from sqlalchemy.orm import Session

from core.errors import PropflowError
from core.policy import get_policy
from core.vocabulary import Priority
from models import directory, limits
from models.forms import Form, Short
from models.intake import Intake, Opening, Place
from models.validate import CommaList, check_choice, text

if TYPE_CHECKING:  # the policy's models load on first use (core/policy)
    from core.policy import Policy
    from core.policy import Procedure as PolicySection

CLASS_LABELS = {"1": "一级（中央领导、外宾）", "2": "二级（上级检查）", "3": "三级（同行参观）",
                "4": "四级（意向客户、租户）"}

_FORMAT = "%Y-%m-%d %H:%M"


def parse_local(value: str, tz: str, field: str) -> datetime:
    """'2026-11-26 10:00' in the company's time zone -> aware UTC."""
    try:
        naive = datetime.strptime(value.strip(), _FORMAT)
    except ValueError:
        raise PropflowError(f"{field}：{value!r} 不是有效时间；expected YYYY-MM-DD HH:MM "
                            "(local time), e.g. 2026-11-26 10:00", field=field) from None
    return naive.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)


def out_of_hours(policy: Policy, at: datetime) -> bool:
    """Not within business hours of a working day (the policy's calendar)."""
    local = at.astimezone(ZoneInfo(policy.timezone))
    hours = policy.business_hours
    return not (policy.business_calendar().is_workday(local.date())
                and hours.start <= local.time() < hours.end)


def _class(value: str, info: ValidationInfo) -> str:
    """One of the policy's classes, named as the user typed it: --class."""
    return check_choice(value, list((info.context or {})["procedure"].classes), "class")


class VisitIntake(Intake):
    """A visit booked (or arriving unannounced): when, who, which class."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={
        "examples": [dict(visit_class="1", at="2026-11-26 10:00", community="YGHY", guests=12,
                          purpose="上级领导视察园区", cars=["京A12345"])]})

    visit_class: Annotated[str, AfterValidator(_class)] = Field(
        alias="class", description="接待等级 1|2|3|4：一级中央领导/外宾，二级上级检查，三级同行，"
                                   "四级意向客户")
    community: str = Field(description="项目编号，如 YGHY")
    guests: int = Field(ge=1, le=10000, description="来访人数")
    purpose: Annotated[str, text("what the visit is for", limits.NOTE)] = Field(
        description="来访事由")
    at: str = Field("", description="到访时间 YYYY-MM-DD HH:MM（当地时间）；突访可省略（即刻）")
    cars: CommaList = Field(default_factory=list, description="来访车牌，如 京A12345,京B67890")
    unannounced: bool = Field(False, description="突访（未预约）")

    def place(self, session: Session) -> Place:
        return Place(directory.community(session, self.community).id)

    def open(self, session: Session, place: Place, policy: PolicySection,
             now: datetime) -> Opening:
        whole = get_policy()
        if self.at:
            arrival = parse_local(self.at, whole.timezone, "at")
        elif self.unannounced:
            arrival = now
        else:
            raise PropflowError("at：预约接待须填写到访时间；expected YYYY-MM-DD HH:MM, or "
                                "--unannounced for a visit arriving now", field="at")
        if arrival <= now and not self.unannounced:
            raise PropflowError(f"at：到访时间 {self.at} 已过；expected a time after "
                                f"{now.astimezone(ZoneInfo(whole.timezone)):%Y-%m-%d %H:%M}",
                                field="at")
        if arrival < now:
            arrival = now  # unannounced: they are here
        late = out_of_hours(whole, arrival)
        label = CLASS_LABELS.get(self.visit_class, self.visit_class)
        return Opening(
            reporter=f"{self.guests} 位来宾", description=self.purpose,
            category=f"class_{self.visit_class}", actor="front_desk",
            priority=Priority.HIGH if self.visit_class in ("1", "2") else Priority.MEDIUM,
            data={"visit_class": self.visit_class, "class_label": label,
                  "arrival": arrival.isoformat(),
                  "arrival_local": f"{arrival.astimezone(ZoneInfo(whole.timezone)):%Y-%m-%d %H:%M}",
                  "guests": self.guests, "cars": self.cars,
                  "unannounced": self.unannounced, "out_of_hours": late},
            audit={"visit_class": self.visit_class, "arrival": arrival.isoformat(),
                   "out_of_hours": late, "unannounced": self.unannounced},
        )


def countdown(section: PolicySection, policy: Policy, visit_class: str, arrival: datetime,
              cars: list[str], now: datetime) -> dict[str, datetime]:
    """The class's preparation steps and when each falls due (its countdown before the
    arrival), earliest first. A step whose time has already passed when the visit is booked
    (short notice, or unannounced) gets its policy window from now: late, never born overdue."""
    plan: dict[str, datetime] = {}
    for kind in section.classes[visit_class]:
        if kind == "parking" and not cars:
            continue  # nobody comes by car: no spaces to reserve
        due = arrival - section.countdown[kind]
        if due <= now:
            due = now + (policy.rule("visit", kind, None).window or timedelta(minutes=15))
        plan[kind] = due
    return dict(sorted(plan.items(), key=lambda item: item[1]))


def restore_due(policy: Policy, arrival: datetime, now: datetime) -> datetime:
    """The site is restored within its window after the visit (or now, if later)."""
    window = policy.rule("visit", "restore", None).window or timedelta(hours=4)
    return max(arrival, now) + window


# --- forms -------------------------------------------------------------------------------

class VisitApprovalForm(Form):
    approved: bool = Field(description="是否批准非办公时间接待")
    reason: Short = ""


class DutyPlanForm(Form):
    posts: Short = Field(min_length=1,
                         description="接待安排表：岗位与人员，如 大堂-张三；停车场-李四")
    note: Short = ""


class ReadinessForm(Form):
    escape_routes: bool = Field(description="疏散通道畅通")
    extinguishers: bool = Field(description="灭火器完好")
    emergency_lights: bool = Field(description="应急照明正常")
    lifts: bool = Field(description="电梯运行正常")
    lift_plan: Short = Field(min_length=1, description="电梯故障应急预案")
    note: Short = ""


class CleaningForm(Form):
    meeting_hall: bool = Field(True, description="会议厅")
    plant_rooms: bool = Field(True, description="设备房")
    corners: bool = Field(True, description="死角")
    plants: bool = Field(True, description="绿植摆放")
    av: bool = Field(True, description="音响投影调试")
    note: Short = ""


class FindingForm(Form):
    finding: Short = Field(min_length=1, description="发现的问题与处理")


class ParkingForm(Form):
    spaces: Short = Field(min_length=1, description="预留车位位置")
    note: Short = ""
