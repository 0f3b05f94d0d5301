"""The training clock (情景模拟): simulated time kept in the database, so every process
(CLI, service, flow runs) sees the same instant; it only moves forward, by command.

core.clock picks it in training mode; models.db installs it there when it is imported.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from sqlalchemy import select

from core import clock as core_clock
from core.clock import Clock, MovableClock, get_clock
from core.errors import NotFound, PropflowError
from core.policy import get_policy
from core.vocabulary import StepStatus
from models.cases import SimClock, Step
from models.db import unit_of_work


class TrainingClock:
    """Simulated time shared through the database. A new one starts at 09:00 on a working
    day, whatever the hour it is created at, so a walkthrough reads the same at 22:00 as at
    10:00; it starts from `wall`, by default core.clock.wall_clock (real time)."""

    def __init__(self, wall: Clock | None = None) -> None:
        self._wall = wall

    def now(self) -> datetime:
        # Read without the write lock: the time is asked for inside writing units of work,
        # and on SQLite a second writer there would wait for the first for ever.
        with unit_of_work(write=False) as session:
            row = session.get(SimClock, 1)
            if row is not None:
                return row.now
        start = training_start((self._wall or core_clock.wall_clock).now())
        try:
            with unit_of_work() as session:
                row = session.get(SimClock, 1)
                if row is None:
                    row = SimClock(id=1, now=start)
                    session.add(row)
                return row.now
        except RuntimeError as exc:
            # Asked first inside a writing unit on SQLite (opening the first case): it cannot
            # write now. The next reading outside one stores the same morning.
            if "deadlock" not in str(exc):
                raise
            return start

    def advance(self, delta: timedelta) -> datetime:
        if delta <= timedelta(0):
            raise PropflowError("delta：时钟只能向前拨动；expected a positive duration",
                                field="delta")
        self.now()  # make sure the row exists
        with unit_of_work() as session:
            row = session.scalars(select(SimClock).where(SimClock.id == 1).with_for_update()).one()
            row.now = row.now + delta
            return row.now


TRAINING_DAY_START = time(9, 0)


def training_start(wall: datetime) -> datetime:
    """The first 09:00 on a working day not before `wall`, in the policy's time zone: before
    09:00 on a working day that is today, otherwise the next working day. Never in the past,
    so a new training clock never shows a time before the real one it was made at."""
    calendar = get_policy().business_calendar()
    local = wall.astimezone(calendar.zone)
    day = local.date()
    while True:
        start = datetime.combine(day, TRAINING_DAY_START, tzinfo=calendar.zone)
        if start >= local and calendar.is_workday(day):
            return start.astimezone(UTC)
        day += timedelta(days=1)


def advance_to_next_due() -> tuple[datetime, int]:
    """Move the training clock one second past the earliest future due time of a waiting
    step, so the next SLA pass lapses it whatever hour the walkthrough is at. Returns the new
    time and the step's id."""
    clock = get_clock()
    if not isinstance(clock, MovableClock):
        raise PropflowError(
            "PROPFLOW_MODE：正常模式下时钟是真实时间，不能拨动；expected PROPFLOW_MODE=training",
            field="PROPFLOW_MODE", code="forbidden",
        )
    at = clock.now()
    with unit_of_work(write=False) as session:
        nearest = session.execute(
            select(Step.id, Step.due_at).where(Step.status == StepStatus.WAITING, Step.due_at > at)
            .order_by(Step.due_at, Step.id).limit(1)).first()
    if nearest is None:
        raise NotFound("to-next-due：没有尚未到期的待处理步骤；expected a waiting step "
                       "(`propflow steps list`), or a duration such as 1h", field="to-next-due")
    moved = clock.advance(nearest.due_at - at + timedelta(seconds=1))
    return moved, nearest.id
