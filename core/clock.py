"""The one clock. Nothing else reads the wall clock.

normal mode: real time, cannot be moved. training mode (情景模拟): a simulated time kept
in the database, so every process (CLI, service, flow runs) sees the same instant; it
only moves forward, by command. That clock lives with the tables (models.simclock);
models.db installs it here when it is imported, so this module needs nothing of ours but
settings, errors and the calendar.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from core.errors import PropflowError
from core.settings import get_settings
from core.workdays import parse_window


class Clock(Protocol):
    def now(self) -> datetime: ...


@runtime_checkable
class MovableClock(Clock, Protocol):
    """A clock that moves by command (training, tests); the real one never does."""

    def advance(self, delta: timedelta) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


# The real time a new training clock starts from; a test says "it is 22:00 on a Friday".
wall_clock: Clock = SystemClock()


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


# Ten years is more than any training scenario needs, and keeps every date arithmetic sane.
MAX_ADVANCE = timedelta(days=3650)

_override: Clock | None = None
_training: Callable[[], Clock] | None = None


def install_training_clock(make: Callable[[], Clock]) -> None:
    """How to build the clock of training mode; models.db calls this when it is imported."""
    global _training
    _training = make


def set_clock(clock: Clock | None) -> None:
    """Inject a clock for this process (tests); None returns to the configured one."""
    global _override
    _override = clock


def get_clock() -> Clock:
    if _override is not None:
        return _override
    if get_settings().mode != "training":
        return SystemClock()
    if _training is None:  # a wiring mistake, never the user's: fail loudly, not on real time
        raise RuntimeError("PROPFLOW_MODE=training needs the training clock: import models.db "
                           "(it installs models.simclock) before reading the time")
    return _training()


def now() -> datetime:
    return get_clock().now()


def advance(text: str) -> datetime:
    clock = get_clock()
    if not isinstance(clock, MovableClock):
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
        return clock.advance(delta)
    except OverflowError:  # past the year 9999, step by step
        raise PropflowError("delta：模拟时钟已到尽头；expected a fresh training database",
                            field="delta") from None
