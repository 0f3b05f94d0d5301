"""The policy file: windows, calendars, escalation chains, channels, as pydantic models.

Loaded through core.policy (the package), which imports this module on first use only.
"""

from __future__ import annotations

import hashlib
import logging
import time as wall
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.channels import SMS_KINDS, parse_channel
from core.errors import PropflowError
from core.policy.inspection import KEY, InspectionRules
from core.policy.movein import MoveInRules
from core.procedures import PRIORITIES, PROCEDURES, STEPS
from core.roles import ROLES
from core.settings import get_settings
from core.workdays import BusinessCalendar, parse_window

CalendarKind = Literal["24x7", "business"]
log = logging.getLogger("propflow.policy")  # operators filter the logs on propflow.*


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_window(str(value))


Duration = Annotated[timedelta, BeforeValidator(_duration)]


def _date(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError("不是有效日期；expected a date such as 2026-10-01") from None


Day = Annotated[date, BeforeValidator(_date)]


class Signers(_Strict):
    """A step several people approve: 会签 `all` of the roles, 或签 `any` one of them, 依次
    `sequence` one after another in the order listed. Each role is one signature, by anyone
    holding it in the case's community (models/signers.py)."""

    mode: Literal["all", "any", "sequence"]
    roles: list[str] = Field(min_length=1)


class WindowRule(_Strict):
    """A response window: a duration on a calendar, or a count of working days.

    A window counts clock time unless the policy says `calendar: business` (PROCEDURES.md
    §10: a promise in hours or days is clock time; only a short staff window, shorter than
    one working day, may count business hours)."""

    window: Duration | None = None
    workdays: int | None = Field(None, ge=1)
    calendar: CalendarKind = "24x7"
    on_lapse: Literal["escalate", "expire"] = "escalate"
    chain: list[str] | None = None
    signers: Signers | None = None

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
    # Who checks for similar hazards once it is over (PROCEDURES.md §10).
    hazard_check: str = "tech_supervisor"


class ReceptionDay(_Strict):
    """The manager's monthly reception day: the first such weekday of the month, moved to
    the next working day when it is not one; residents told `notice` before."""

    weekday: int = Field(5, ge=1, le=7)  # ISO: 1 Monday .. 7 Sunday; 5 Friday (seed)
    start: time = time(10, 0)
    end: time = time(12, 0)
    notice: Duration = timedelta(days=7)


# And so _Strict; move-in's rules: core/policy/movein.py, rounds': core/policy/inspection.py
class Procedure(MoveInRules, InspectionRules):
    # The registry (core/procedures.py) numbers cases; a file written before it may still
    # say the prefix, and then it must say the same.
    prefix: str | None = Field(None, pattern=r"^[A-Z]{2,4}$")
    chain: list[str] | None = None
    # Per-procedure windows of each escalation level (emergencies count minutes).
    level_windows: dict[str, Duration] = {}
    # Levels may be skipped (越级): a role of the chain may decide a step at once, before it
    # escalates there; the levels it skipped are told afterwards (emergencies, §10).
    skip_levels: bool = False
    high_keywords: list[str] = []
    categories: dict[str, Category] = {}
    kinds: dict[str, Kind] = {}
    steps: dict[str, dict[str, WindowRule]]
    # Thresholds the company tunes; each is read by the procedure it names (default: seed).
    # repair: a callback rated this or lower (1-5) opens a complaint about the work order.
    complaint_rating: int = 2
    # complaint: a result the complainant refuses is reinvestigated one level up this ladder
    # (the responsible department first, then each role here in turn).
    reopen_levels: list[str] = ["cs_supervisor", "project_manager"]
    # complaint: a compensation above this many yuan needs the project manager's approval.
    approval_above: Decimal = Field(Decimal(0), ge=0)
    # repair: while work is under way the owner hears the progress noted, at most this
    # often, every note since the last message merged into one (None: never).
    progress_every: Duration | None = None
    # complaint: the reply time limit the complainant is told at acknowledgement (clock time).
    reply_within: Duration | None = None
    # visit: how long before the arrival each preparation step falls due (the countdown),
    # and which of those steps each class of visit takes.
    countdown: dict[str, Duration] = {}
    classes: dict[str, list[str]] = {}
    # reception: when the monthly reception day is.
    reception_day: ReceptionDay | None = None

    @field_validator("complaint_rating")
    @classmethod
    def _a_rating(cls, value: int) -> int:
        if not 1 <= value <= 5:
            raise ValueError("回访评分只有 1-5 分；expected a rating from 1 to 5: a callback "
                             "rated this or lower opens a complaint")
        return value


class Escalation(_Strict):
    chain: list[str]
    # Checked one by one so an error names its key: escalation.windows.csr
    windows: dict[str, Annotated[timedelta, BeforeValidator(_duration)]]


class BusinessHours(_Strict):
    start: time
    end: time


class CalendarOverrides(_Strict):
    extra_workdays: list[Day] = []
    extra_holidays: list[Day] = []


class Limits(_Strict):
    # The largest charge or compensation a form accepts, in yuan (default).
    money_max: Decimal = Field(Decimal(100000), gt=0, le=Decimal(10) ** 12)


class Supervision(_Strict):
    """Run supervision: when a case's run counts as stuck, and how often it is restarted."""

    # Pending, Scheduled or Running this long, or a decision or escalation unread this long.
    stuck_after: Duration = timedelta(minutes=10)
    max_restarts: int = Field(3, ge=0, le=20)
    backoff: Duration = timedelta(minutes=1)  # before the 2nd restart, doubling after


class SmsTemplate(_Strict):
    """A template the SMS provider approved: its id and the values it takes, by name for
    Alibaba Cloud (TemplateParam) and in this order for Tencent Cloud (TemplateParamSet)."""

    id: str = Field(min_length=1)
    params: list[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$")]] = []


class Sms(_Strict):
    # The channel (of `channels:`, an SMS kind) that texts an owner whom nothing else reaches.
    channel: str | None = None
    sign_name: str = Field(min_length=1)  # 短信签名, as approved by the provider
    templates: dict[str, SmsTemplate] = {}  # event -> template; an event without one is not texted


class Links(_Strict):
    """How long a one-tap link in a message stays valid (it works once)."""

    staff_ttl: Duration = timedelta(hours=72)
    owner_ttl: Duration = timedelta(days=7)


class Reports(_Strict):
    """The monthly figures (models/kpi.py) and their targets (PROCEDURES.md §8, §10)."""

    # A repair is a repeat (重复报修) when the same unit reported the same category this many
    # days before (default: 30).
    repeat_days: int = Field(30, ge=1, le=365)
    repeat_target: float = Field(0.05, gt=0, lt=1)  # repeat repairs below 5 % (seed)
    satisfaction_baseline: float = Field(80, ge=0, le=100)  # of 100 (seed)
    satisfaction_target: float = Field(90, ge=0, le=100)
    # Exports (HTML, XLSX) show phone and ID numbers only when this is on (§9, §10).
    personal_data: bool = False


class Policy(_Strict):
    timezone: str = "Asia/Shanghai"
    lang: Literal["zh-CN", "en"] = "zh-CN"
    business_hours: BusinessHours
    calendar: CalendarOverrides = CalendarOverrides()
    warning_threshold: float = Field(0.8, gt=0, lt=1)
    escalation: Escalation
    channels: dict[str, dict[str, Any]] = {}
    routes: dict[str, list[str]] = {}
    # Who may decide a role's steps at any time besides its assignee: role -> roles.
    stand_ins: dict[str, list[str]] = {}
    procedures: dict[str, Procedure]
    limits: Limits = Limits()
    supervision: Supervision = Supervision()
    sms: Sms | None = None
    links: Links = Links()
    reports: Reports = Reports()

    def business_calendar(self) -> BusinessCalendar:
        return BusinessCalendar(
            tz=self.timezone, day_start=self.business_hours.start,
            day_end=self.business_hours.end,
            extra_workdays=self.calendar.extra_workdays,
            extra_holidays=self.calendar.extra_holidays,
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
    """procedures.repair.steps.accept.chain[1]: list positions in brackets."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith("function-"):
            out += f".{part}" if out else str(part)
    return out


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


class _Loader(yaml.CSafeLoader):
    """YAML that leaves a date it cannot build (2026-02-30) as text, for the check to name.
    libyaml's parser (in PyYAML's wheels): the pure-Python one took most of the policy load
    that every command does."""


def _timestamp(loader: _Loader, node: yaml.Node) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)  # type: ignore[arg-type]
    except ValueError:
        return loader.construct_scalar(node)  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise PropflowError(f"策略文件 {path} 不存在；expected the path of a YAML policy "
                            "file in PROPFLOW_POLICY", field="PROPFLOW_POLICY") from exc


def load_policy(path: Path | str) -> Policy:
    path = Path(path)
    return _parse(path, _read(path))


def _parse(path: Path, data: bytes) -> Policy:
    try:
        raw = yaml.load(data.decode("utf-8"), Loader=_Loader)  # noqa: S506 (a safe loader)
    except UnicodeDecodeError as exc:
        raise PropflowError(f"策略文件 {path}：不是 UTF-8 文本；expected a UTF-8 YAML file",
                            field="policy") from exc
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
    _check_meaning(path, policy)
    return policy


def _check_channels(path: Path, policy: Policy) -> None:
    for name, spec in policy.channels.items():
        try:
            parse_channel(name, spec)
        except ValueError as exc:
            raise PropflowError(f"策略文件 {path}：键 channels.{name}：{exc}",
                                field=f"channels.{name}") from exc
    for event, names in policy.routes.items():
        for name in names:
            if name not in policy.channels:
                raise PropflowError(
                    f"策略文件 {path}：键 routes.{event}：渠道 '{name}' 未在 channels 中定义；"
                    f"expected one of {sorted(policy.channels)}", field=f"routes.{event}")
    if policy.sms is not None:
        _check_sms(path, policy, policy.sms)
    elif any(policy.channels[n].get("kind") in SMS_KINDS for names in policy.routes.values()
             for n in names):
        raise _refuse(path, "sms", "routes 含短信渠道，但没有 sms 配置；expected an sms "
                      "section with sign_name and templates (the provider's template ids)")


def _check_sms(path: Path, policy: Policy, sms: Sms) -> None:
    texting = sorted(n for n, c in policy.channels.items() if c.get("kind") in SMS_KINDS)
    if sms.channel is not None and sms.channel not in texting:
        raise _refuse(path, "sms.channel", f"渠道 {sms.channel!r} 不是短信渠道；expected the "
                      f"name of a channel of kind {' or '.join(SMS_KINDS)}: {texting or 'none'}")
    from core.render import events

    known = events()
    for event in sms.templates:
        if event not in known:
            raise _refuse(path, f"sms.templates.{event}", f"未知的消息 (no template "
                          f"core/templates/*/{event}.*.j2)；expected one of {sorted(known)}")
    for event, names in policy.routes.items():
        if set(names) & set(texting) and event not in sms.templates:
            raise _refuse(path, f"sms.templates.{event}", f"routes.{event} 含短信渠道，但没有"
                          "对应的短信模板；expected a template id and its params for it")


def _refuse(path: Path, key: str, message: str) -> PropflowError:
    return PropflowError(f"策略文件 {path}：键 {key}：{message}", field=key)


def check_roles(path: Path, key: str, roles: list[str]) -> None:
    """A chain names at least one role (else nobody is told), and every role exists."""
    if not roles:
        raise _refuse(path, key, "升级链为空；expected at least one role, e.g. "
                                 "[cs_supervisor, project_manager, company_cs]")
    for i, role in enumerate(roles):
        check_role(path, f"{key}[{i}]", role)


def check_role(path: Path, key: str, role: str) -> None:
    if role not in ROLES:
        raise _refuse(path, key, f"未知的角色 {role!r}；expected one of {sorted(ROLES)}")


def _check_role_keys(path: Path, key: str, roles: dict[str, Any]) -> None:
    for role in roles:
        if role not in ROLES:
            raise _refuse(path, f"{key}.{role}", f"未知的角色 (unknown role)；expected one of "
                                                 f"{sorted(ROLES)}")


def _check_meaning(path: Path, policy: Policy) -> None:
    """What the schema alone cannot see: names that must exist, orders that must hold."""
    try:
        ZoneInfo(policy.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: 'Asia' is a folder
        raise _refuse(path, "timezone", f"未知的时区 {policy.timezone!r}；expected an IANA "
                                        "time zone such as Asia/Shanghai") from None
    hours = policy.business_hours
    if hours.start >= hours.end:
        raise _refuse(path, "business_hours", f"上班时间 {hours.start:%H:%M} 不早于下班时间 "
                      f"{hours.end:%H:%M}；expected start before end within one day, "
                      "e.g. {start: '08:30', end: '17:30'}")
    check_roles(path, "escalation.chain", policy.escalation.chain)
    _check_role_keys(path, "escalation.windows", policy.escalation.windows)
    for name in STEPS:
        if name not in policy.procedures:
            raise _refuse(path, f"procedures.{name}", f"缺少流程 {name} 的配置；expected a "
                          f"window for each of its steps {list(STEPS[name])}")
    day = datetime.combine(date.min, hours.end) - datetime.combine(date.min, hours.start)
    for name, proc in policy.procedures.items():
        _check_procedure(path, name, proc, day)
        if proc.approval_above > policy.limits.money_max:
            raise _refuse(path, f"procedures.{name}.approval_above", f"超过表单可接受的最大金额 "
                          f"{policy.limits.money_max}；expected at most limits.money_max, or "
                          "no compensation would ever need approval")
    _check_movein(path, policy)
    _check_inspection(path, policy)


def _check_inspection(path: Path, policy: Policy) -> None:
    """A plan's key goes into step keys, deployment names and URLs; its role must exist."""
    import re

    for name, proc in policy.procedures.items():
        if proc.plans and name != "inspection":
            raise _refuse(path, f"procedures.{name}.plans", "只有 inspection 有巡查计划；"
                          "expected the plans under procedures.inspection")
        for key, plan in proc.plans.items():
            if not re.fullmatch(KEY, key):
                raise _refuse(path, f"procedures.{name}.plans.{key}", "计划编号不合规；expected "
                              "lower-case letters, digits and _ (at most 30), starting with a "
                              "letter")
            check_role(path, f"procedures.{name}.plans.{key}.role", plan.role)


def _check_movein(path: Path, policy: Policy) -> None:
    """A move-in's defects are opened as repairs of a category the repair section has, and
    every buyer type the intake accepts has its documents, each with a label."""
    movein, repair = policy.procedures.get("movein"), policy.procedures.get("repair")
    if movein is None:
        return
    if repair is not None and movein.defect_category not in repair.categories:
        raise _refuse(path, "procedures.movein.defect_category", f"未知的报修类别 "
                      f"{movein.defect_category!r}；expected one of {sorted(repair.categories)}")
    for buyer in ("owner", "agent", "company"):
        if buyer not in movein.documents:
            raise _refuse(path, f"procedures.movein.documents.{buyer}", "缺少该购房方式要核验的"
                          "资料；expected a list such as [id_card, move_in_notice]")
        for i, key in enumerate(movein.documents[buyer]):
            if key not in movein.document_labels:
                raise _refuse(path, f"procedures.movein.documents.{buyer}[{i}]", f"资料 {key!r} "
                              f"没有名称；expected one of {sorted(movein.document_labels)}, or "
                              "a label for it in document_labels")


def _hours(span: timedelta) -> str:
    minutes = int(span.total_seconds()) // 60
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes % 60 else f"{minutes // 60}h"


def _check_procedure(path: Path, name: str, proc: Procedure,
                     workday: timedelta | None = None) -> None:
    at = f"procedures.{name}"
    if name not in STEPS:
        raise _refuse(path, at, f"未知的流程 (no flow runs it)；expected one of {sorted(STEPS)}")
    declared = PROCEDURES[name].prefix
    if proc.prefix is not None and proc.prefix != declared:
        raise _refuse(path, f"{at}.prefix", f"编号前缀 {proc.prefix!r} 与流程登记不符；expected "
                      f"{declared!r} (core/procedures.py), or no prefix here")
    if proc.chain is not None:
        check_roles(path, f"{at}.chain", proc.chain)
    check_roles(path, f"{at}.reopen_levels", proc.reopen_levels)
    _check_role_keys(path, f"{at}.level_windows", proc.level_windows)
    for key, category in proc.categories.items():
        if category.department is not None:
            check_role(path, f"{at}.categories.{key}.department", category.department)
    for key, kind in proc.kinds.items():
        for i, duty in enumerate(kind.fanout):
            check_role(path, f"{at}.kinds.{key}.fanout[{i}].role", duty.role)
        check_role(path, f"{at}.kinds.{key}.hazard_check", kind.hazard_check)
    asked = STEPS[name]
    for step in proc.countdown:
        if step not in asked:
            raise _refuse(path, f"{at}.countdown.{step}", f"未知的步骤；expected one of "
                          f"{list(asked)}")
    for key, taken in proc.classes.items():
        for i, step in enumerate(taken):
            if step not in proc.countdown:
                raise _refuse(path, f"{at}.classes.{key}[{i}]", f"步骤 {step!r} 不在倒排计划 "
                              f"(countdown) 中；expected one of {list(proc.countdown)}")
    for step in asked:
        if step not in proc.steps:
            raise _refuse(path, f"{at}.steps.{step}", f"缺少步骤 {step} 的时限；expected a "
                          f"window for every step the {name} flow asks for: {list(asked)}")
    for step, rules in proc.steps.items():
        if step not in asked:
            raise _refuse(path, f"{at}.steps.{step}", f"未知的步骤 (the {name} flow never asks "
                          f"for it)；expected one of {list(asked)}")
        _check_rules(path, f"{at}.steps.{step}", rules, prioritised=PROCEDURES[name].prioritised,
                     workday=workday)


def _check_rules(path: Path, at: str, rules: dict[str, WindowRule], *, prioritised: bool,
                 workday: timedelta | None = None) -> None:
    """Match Policy.rule(): the case's priority, else `default`, else the only rule there is."""
    for key, rule in rules.items():
        if key != "default" and key not in PRIORITIES:
            raise _refuse(path, f"{at}.{key}", "未知的优先级 (unknown priority)；expected one "
                          f"of {['default', *PRIORITIES]}")
        if (workday is not None and rule.calendar == "business" and rule.window is not None
                and rule.window > workday):
            # 24 h on business hours is ~3 working days: never what a promise in hours means.
            raise _refuse(path, f"{at}.{key}.calendar", f"按工作时间计的时限不能超过一个工作日"
                          f"（{_hours(workday)}）；以小时或天承诺的时限按自然时间计；expected "
                          "calendar: 24x7 (clock time), or workdays: N for working days")
        if rule.chain is not None:
            check_roles(path, f"{at}.{key}.chain", rule.chain)
        if rule.signers is not None:
            check_roles(path, f"{at}.{key}.signers.roles", rule.signers.roles)
    if "default" in rules:
        return
    if prioritised:
        for priority in PRIORITIES:
            if priority not in rules:
                raise _refuse(path, f"{at}.{priority}", f"缺少优先级 {priority} 的时限；"
                              f"expected default or each of {list(PRIORITIES)}")
    elif len(rules) != 1:
        raise _refuse(path, f"{at}.default", "缺少 default 时限 (this procedure has no "
                      "priorities)；expected a default window, e.g. {default: {window: 30m}}")


# A file changed less than this before it was read may change again within the same
# filesystem timestamp tick: read it again next time rather than trust its mtime (racy git).
_RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class _Seen:
    stat: tuple[int, int, int] | None
    digest: str
    racy: bool
    error: PropflowError | None


_seen: dict[str, _Seen] = {}
_valid: dict[str, Policy] = {}


def get_policy() -> Policy:
    """The policy file as it is now; a running process re-reads it when it changes.

    An invalid edit while the process runs keeps the last valid policy and logs the error
    once (waiting cases keep their windows); `propflow check` and a fresh start refuse it.
    """
    path = Path(get_settings().policy)
    name = str(path)
    try:
        st = path.stat()
        stat: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
    except FileNotFoundError:
        stat = None
    seen = _seen.get(name)
    if seen is None or seen.stat != stat or seen.racy:
        seen = _seen[name] = _reload(path, stat, seen)
    if seen.error is not None and name not in _valid:
        raise seen.error
    return _valid[name]


def _reload(path: Path, stat: tuple[int, int, int] | None, before: _Seen | None) -> _Seen:
    # Wall time on purpose: it is compared with the file system's own timestamps.
    racy = stat is not None and wall.time_ns() - stat[0] < _RACY_NS
    try:
        data = _read(path)
    except PropflowError as exc:
        return _refused(path, _Seen(stat, "", racy, exc), before)
    digest = hashlib.sha256(data).hexdigest()
    if before is not None and before.digest == digest:
        return replace(before, stat=stat, racy=racy)
    try:
        _valid[str(path)] = _parse(path, data)
    except PropflowError as exc:
        return _refused(path, _Seen(stat, digest, racy, exc), before)
    return _Seen(stat, digest, racy, None)


def _refused(path: Path, seen: _Seen, before: _Seen | None) -> _Seen:
    if str(path) in _valid and (before is None or before.digest != seen.digest):
        log.error("策略文件已改动但无效，继续使用上一个有效版本 (keeping the last valid "
                  "policy)：%s", seen.error.message if seen.error else "")
    return seen
