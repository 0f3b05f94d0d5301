"""The policy file: windows, calendars, escalation chains, channels. Validated at start."""

from __future__ import annotations

from datetime import time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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


class WindowRule(_Strict):
    window: timedelta
    calendar: CalendarKind = "business"
    on_lapse: Literal["escalate", "expire"] = "escalate"
    chain: list[str] | None = None

    _w = field_validator("window", mode="before")(classmethod(lambda cls, v: _duration(v)))


class Category(_Strict):
    label: str
    skills: list[str]
    chargeable: bool = False
    complex: bool = False


class Procedure(_Strict):
    prefix: str = Field(pattern=r"^[A-Z]{2,4}$")
    chain: list[str] | None = None
    high_keywords: list[str] = []
    categories: dict[str, Category] = {}
    steps: dict[str, dict[str, WindowRule]]


class Escalation(_Strict):
    chain: list[str]
    windows: dict[str, timedelta]

    @field_validator("windows", mode="before")
    @classmethod
    def _windows(cls, v: Any) -> Any:
        return {k: _duration(x) for k, x in v.items()} if isinstance(v, dict) else v


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
        return rules.get(priority or "default") or rules.get("default") or next(iter(rules.values()))

    def chain(self, procedure: str, step: str, priority: str | None) -> list[str]:
        return (
            self.rule(procedure, step, priority).chain
            or self.procedures[procedure].chain
            or self.escalation.chain
        )

    def level_window(self, role: str) -> timedelta:
        return self.escalation.windows.get(role, timedelta(hours=1))


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith("function-"))


def load_policy(path: Path | str) -> Policy:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PropflowError(f"策略文件 {path} 不存在", field="PROPFLOW_POLICY") from exc
    except yaml.YAMLError as exc:
        raise PropflowError(f"策略文件 {path} 不是合法的 YAML：{exc}", field="policy") from exc
    if not isinstance(raw, dict):
        raise PropflowError(f"策略文件 {path}：顶层应为映射 (mapping)", field="policy")
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _where(err["loc"])
        got = err.get("input")
        got_text = "" if isinstance(got, dict) else f"（实际为 {got!r}）"
        raise PropflowError(
            f"策略文件 {path}：键 {key}：{err['msg']}{got_text}", field=key
        ) from exc
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
