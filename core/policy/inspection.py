"""The inspection rounds (巡查) of the policy file, `procedures.inspection.plans`
(PROCEDURES.md §7, §10).

A plan says what is inspected (its checkpoints, each with its checklist), how often (a cron
in the plan's time zone: the seeds disagree on frequencies, so the company writes its own),
within which patrol hours, whether only on working days, and who: the stewards' areas (the
community's buildings split by the number of its stewards) or one round per community (the
supervisor's own patrol). Plain models, no import of core.policy.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    field_validator,
    model_validator,
)

from core.workdays import parse_window

# What a plan covers (PROCEDURES.md §7): shown on its rounds, and what its findings mean.
COVERS = {
    "public_facilities": "公共设施",
    "renovation": "装修现场",
    "grounds": "环境卫生",
    "shops": "商铺",
    "leisure": "休闲区域",
    "vacant_units": "空置房",
    "supervisor_patrol": "主管巡查抽查",
    "pest_control": "消杀",
}

# A checkpoint's finding (the checklist form's `finding`), and what each sets off.
FINDINGS = {
    "none": "无异常",
    "broken_facility": "设施损坏（转报修）",
    "renovation_violation": "违规装修（制止并记录）",
    "fire_safety": "商铺消防不合格（整改通知书）",
    "gas_smell": "燃气异味（启动应急）",
    "vacant_defect": "空置房缺陷（报开发商保修中心，下月复查）",
}

KEY = r"^[a-z][a-z0-9_]{0,29}$"  # a plan's or checkpoint's key: in step keys and URLs


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Checkpoint(_Strict):
    """One place on the round (a QR code on the wall), with what is checked there."""

    label: str
    items: list[str]

    @field_validator("label")
    @classmethod
    def _label(cls, value: str) -> str:
        return _label(value)

    @field_validator("items")
    @classmethod
    def _items(cls, value: list[str]) -> list[str]:
        if not value or not all(item.strip() for item in value):
            raise ValueError("检查表为空；expected the items checked there, e.g. [照明, 消防栓]")
        return value


def _label(value: str) -> str:
    if not value.strip() or len(value) > 60:
        raise ValueError("名称为空或超过 60 字；expected a label such as 公共设施巡查")
    return value


class Plan(_Strict):
    label: str
    covers: str  # a key of COVERS
    # When a round starts, in `timezone`; it runs until the next start the same day or the
    # end of the patrol hours, whichever is first, and its checkpoints fall due then.
    cron: str
    timezone: str = "Asia/Shanghai"
    start: time = time(8, 30)  # patrol hours (seed)
    end: time = time(17, 30)
    workdays_only: bool = False  # skip the days the business calendar says are not working
    role: str = "steward"
    # `area`: one round per steward's area (the buildings split by the number of stewards);
    # `community`: one round for the whole community (a supervisor's patrol).
    per: str = "area"
    # Every household of the community told this long before each firing (pest control's
    # notice in every lobby two days before, seed): models/round_notice.py. None: no notice.
    notice: Annotated[timedelta | None, BeforeValidator(lambda v: _duration(v) if v else None)] \
        = None
    checkpoints: dict[str, Checkpoint]

    @field_validator("label")
    @classmethod
    def _plan_label(cls, value: str) -> str:
        return _label(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            CronSim(value, datetime(2026, 1, 1, tzinfo=UTC))
        except (CronSimError, ValueError) as exc:
            raise ValueError(f"不是有效的 cron 表达式（{exc}）；expected five fields such as "
                             "'30 8 * * *' (daily at 08:30) or '30 8 1,15 * *'") from None
        return value

    @field_validator("covers")
    @classmethod
    def _covers(cls, value: str) -> str:
        if value not in COVERS:
            raise ValueError(f"未知的巡查类别；expected one of {list(COVERS)}")
        return value

    @field_validator("per")
    @classmethod
    def _per(cls, value: str) -> str:
        if value not in ("area", "community"):
            raise ValueError("expected area (one round per steward's area) or community "
                             "(one round for the whole community)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError("未知的时区；expected an IANA time zone such as Asia/Shanghai") \
                from None
        return value

    @model_validator(mode="after")
    def _hours(self) -> Plan:
        if self.start >= self.end:
            raise ValueError(f"巡查时段 start {self.start:%H:%M} 不早于 end {self.end:%H:%M}；"
                             "expected start before end within one day, e.g. 08:30-17:30")
        return self

    @field_validator("checkpoints")
    @classmethod
    def _keys(cls, value: dict[str, Checkpoint]) -> dict[str, Checkpoint]:
        import re

        if not value:
            raise ValueError("没有检查点；expected at least one, e.g. {lobby: {label: 大堂, "
                             "items: [照明, 门禁]}}")
        for key in value:
            if not re.fullmatch(KEY, key):
                raise ValueError(f"检查点编号 {key!r} 不合规；expected lower-case letters, digits "
                                 "and _ (at most 30), starting with a letter")
        return value


def _duration(value: Any) -> timedelta:
    return value if isinstance(value, timedelta) else parse_window(str(value))


class InspectionRules(_Strict):
    plans: dict[str, Plan] = {}
    # A shop's rectification (整改通知书) is followed up this long after the notice (seed).
    rectify_within: Annotated[timedelta, BeforeValidator(_duration)] = timedelta(days=3)
    # Vacant-unit checks ordered for a storm (`propflow inspections storm`) are due this long
    # after the order (default): models/storm.py.
    storm_within: Annotated[timedelta, BeforeValidator(_duration)] = timedelta(hours=4)
