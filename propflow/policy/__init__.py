"""The policy file: windows, calendars, escalation chains, channels. Validated at start."""

from __future__ import annotations

from datetime import time, timedelta
from functools import lru_cache
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from propflow.errors import PropflowError
from propflow.settings import get_settings
from propflow.workdays import BusinessCalendar, parse_window

CalendarKind = Literal["24x7", "business"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_window(str(value))


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class WindowRule(_Strict):
    """A response window: a duration on a calendar, or a count of working days."""

    window: Duration | None = None
    workdays: int | None = Field(None, ge=1)
    calendar: CalendarKind = "business"
    on_lapse: Literal["escalate", "expire"] = "escalate"
    chain: list[str] | None = None

    @model_validator(mode="after")
    def _one_measure(self) -> WindowRule:
        if (self.window is None) == (self.workdays is None):
            raise ValueError("expected exactly one of window (e.g. 30m) or workdays (e.g. 2)")
        return self


class Category(_Strict):
    label: str
    skills: list[str] = []
    chargeable: bool = False
    complex: bool = False
    department: str | None = None  # complaints: whose head investigates


class Duty(_Strict):
    role: str
    duty: str


class Kind(_Strict):
    """An emergency kind: who is called out in parallel, or which office-incident class."""

    label: str
    fanout: list[Duty] = []
    office_class: Literal["A", "B", "C"] | None = None


class Procedure(_Strict):
    prefix: str = Field(pattern=r"^[A-Z]{2,4}$")
    chain: list[str] | None = None
    # Per-procedure windows of each escalation level (emergencies count minutes).
    level_windows: dict[str, Duration] = {}
    high_keywords: list[str] = []
    categories: dict[str, Category] = {}
    kinds: dict[str, Kind] = {}
    steps: dict[str, dict[str, WindowRule]]


class Escalation(_Strict):
    chain: list[str]
    # Checked one by one so an error names its key: escalation.windows.csr
    windows: dict[str, Annotated[timedelta, BeforeValidator(_duration)]]


class BusinessHours(_Strict):
    start: time
    end: time


class CalendarOverrides(_Strict):
    extra_workdays: list[Any] = []
    extra_holidays: list[Any] = []


class Policy(_Strict):
    timezone: str = "Asia/Shanghai"
    lang: Literal["zh-CN", "en"] = "zh-CN"
    business_hours: BusinessHours
    calendar: CalendarOverrides = CalendarOverrides()
    warning_threshold: float = Field(0.8, gt=0, lt=1)
    escalation: Escalation
    channels: dict[str, dict[str, Any]] = {}
    routes: dict[str, list[str]] = {}
    procedures: dict[str, Procedure]

    def business_calendar(self) -> BusinessCalendar:
        from datetime import date

        def dates(items: list[Any]) -> list[date]:
            return [d if isinstance(d, date) else date.fromisoformat(str(d)) for d in items]

        return BusinessCalendar(
            tz=self.timezone, day_start=self.business_hours.start,
            day_end=self.business_hours.end,
            extra_workdays=dates(self.calendar.extra_workdays),
            extra_holidays=dates(self.calendar.extra_holidays),
        )

    def rule(self, procedure: str, step: str, priority: str | None) -> WindowRule:
        rules = self.procedures[procedure].steps.get(step)
        if not rules:
            raise KeyError(f"policy has no window for {procedure}.steps.{step}")
        found = rules.get(priority or "default") or rules.get("default")
        return found or next(iter(rules.values()))

    def chain(self, procedure: str, step: str, priority: str | None) -> list[str]:
        return (
            self.rule(procedure, step, priority).chain
            or self.procedures[procedure].chain
            or self.escalation.chain
        )

    def level_window(self, role: str, procedure: str | None = None) -> timedelta:
        own = self.procedures[procedure].level_windows if procedure in self.procedures else {}
        return own.get(role) or self.escalation.windows.get(role, timedelta(hours=1))


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith("function-"))


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys the policy accepts beside the last part of loc (for an unknown key)."""
    node: Any = Policy
    for part in loc[:-1]:
        if get_origin(node) in (Union, UnionType):
            node = next(a for a in get_args(node) if a is not type(None))
        if isinstance(node, type) and issubclass(node, BaseModel):
            if str(part) not in node.model_fields:
                return []
            node = node.model_fields[str(part)].annotation
        elif get_origin(node) in (dict, list):
            node = get_args(node)[-1]
        else:
            return []
    return list(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) else []


def load_policy(path: Path | str) -> Policy:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PropflowError(f"策略文件 {path} 不存在；expected the path of a YAML policy "
                            "file in PROPFLOW_POLICY", field="PROPFLOW_POLICY") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"第 {mark.line + 1} 行第 {mark.column + 1} 列" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PropflowError(f"策略文件 {path}：{where}不是合法的 YAML（{problem}）；"
                            "expected valid YAML", field="policy") from exc
    if not isinstance(raw, dict):
        raise PropflowError(f"策略文件 {path}：顶层应为映射 (mapping)；expected a mapping "
                            f"with keys {_keys_at(('',))}", field="policy")
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _where(err["loc"])
        got = err.get("input")
        got_text = "" if isinstance(got, dict) else f"（实际为 {got!r}）"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"未知的键 (unknown key)；expected one of {_keys_at(err['loc'])}"
        raise PropflowError(f"策略文件 {path}：键 {key}：{msg}{got_text}", field=key) from exc
    _check_channels(path, policy)
    return policy


def _check_channels(path: Path, policy: Policy) -> None:
    from notifications.channels import build_channel

    for name, spec in policy.channels.items():
        try:
            build_channel(name, spec)
        except ValueError as exc:
            raise PropflowError(f"策略文件 {path}：键 channels.{name}：{exc}",
                                field=f"channels.{name}") from exc
    for event, names in policy.routes.items():
        for name in names:
            if name not in policy.channels:
                raise PropflowError(
                    f"策略文件 {path}：键 routes.{event}：渠道 '{name}' 未在 channels 中定义；"
                    f"expected one of {sorted(policy.channels)}", field=f"routes.{event}")


@lru_cache
def _cached(path: str, mtime: float) -> Policy:
    return load_policy(path)


def get_policy() -> Policy:
    path = Path(get_settings().policy)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        mtime = 0.0
    return _cached(str(path), mtime)
