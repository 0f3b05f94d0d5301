"""The one clock. Nothing else reads the wall clock.

normal mode: real time, cannot be moved. training mode (情景模拟): a simulated time kept
in the database, so every process (CLI, service, flow runs) sees the same instant; it
only moves forward, by command.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import select

from propflow.errors import PropflowError
from propflow.settings import get_settings
from propflow.workdays import parse_window


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """For tests in one process: time moves only when told."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, at: datetime) -> None:
        self._now = at


class TrainingClock:
    def now(self) -> datetime:
        from models.cases import SimClock
        from models.db import unit_of_work

        with unit_of_work() as session:
            row = session.get(SimClock, 1)
            if row is None:
                row = SimClock(id=1, now=datetime.now(UTC).replace(microsecond=0))
                session.add(row)
            return row.now

    def advance(self, delta: timedelta) -> datetime:
        from models.cases import SimClock
        from models.db import unit_of_work

        if delta <= timedelta(0):
            raise PropflowError("delta：时钟只能向前拨动；expected a positive duration",
                                field="delta")
        self.now()  # make sure the row exists
        with unit_of_work() as session:
            row = session.scalars(select(SimClock).where(SimClock.id == 1).with_for_update()).one()
            row.now = row.now + delta
            return row.now


# Ten years is more than any training scenario needs, and keeps every date arithmetic sane.
MAX_ADVANCE = timedelta(days=3650)

_override: Clock | None = None


def set_clock(clock: Clock | None) -> None:
    """Inject a clock for this process (tests); None returns to the configured one."""
    global _override
    _override = clock


def get_clock() -> Clock:
    if _override is not None:
        return _override
    return TrainingClock() if get_settings().mode == "training" else SystemClock()


def now() -> datetime:
    return get_clock().now()


def advance(text: str) -> datetime:
    clock = get_clock()
    if not hasattr(clock, "advance") or isinstance(clock, SystemClock):
        raise PropflowError(
            "PROPFLOW_MODE：正常模式下时钟是真实时间，不能拨动；expected PROPFLOW_MODE=training",
            field="PROPFLOW_MODE", code="forbidden",
        )
    try:
        delta = parse_window(text)
    except ValueError as exc:
        raise PropflowError(f"delta：时钟只能按正的时长向前拨动，一次最多 {MAX_ADVANCE.days} 天；"
                            f"{exc}", field="delta") from exc
    if delta > MAX_ADVANCE:
        raise PropflowError(f"delta：一次最多拨动 {MAX_ADVANCE.days} 天；expected a duration "
                            f"of at most {MAX_ADVANCE.days}d", field="delta")
    try:
        return clock.advance(delta)  # type: ignore[union-attr]
    except OverflowError:  # past the year 9999, step by step
        raise PropflowError("delta：模拟时钟已到尽头；expected a fresh training database",
                            field="delta") from None
