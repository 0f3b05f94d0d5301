"""Response-window arithmetic on a 24x7 or a Chinese business-hours calendar.

Public datetimes are aware UTC; the business-hours arithmetic happens in local wall-clock
time because 08:30–17:30 and "working day" only mean something locally.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

log = logging.getLogger("propflow.workdays")

KINDS = ("24x7", "business")
_EXPECTED = "expected e.g. 30m, 2h, 1d, 1h30m"
_WINDOW_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_window(text: str) -> timedelta:
    """'5m', '2h', '1d', '1h30m', '90s' -> timedelta.

    Note '1d' is 24 hours of counted time: on the business calendar that is ~2.7 working
    days, so "within N working days" deadlines should use BusinessCalendar.add_workdays.
    """
    m = _WINDOW_RE.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if not m or not any(m.groups()):
        raise ValueError(f"{text!r} is not a duration; {_EXPECTED}")
    d, h, mi, s = (int(g or 0) for g in m.groups())
    try:
        window = timedelta(days=d, hours=h, minutes=mi, seconds=s)
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration; {_EXPECTED}") from None
    if window <= timedelta(0):
        raise ValueError(f"{text!r} is not a positive duration; {_EXPECTED}")
    return window


def _tod(dt: datetime | time) -> timedelta:
    return timedelta(
        hours=dt.hour, minutes=dt.minute, seconds=dt.second, microseconds=dt.microsecond
    )


class BusinessCalendar:
    def __init__(
        self,
        *,
        tz: str = "Asia/Shanghai",
        day_start: time = time(8, 30),
        day_end: time = time(17, 30),
        extra_workdays: Iterable[date] = (),
        extra_holidays: Iterable[date] = (),
    ) -> None:
        if day_start >= day_end:
            raise ValueError(f"day_start {day_start} must be before day_end {day_end}")
        self.zone = ZoneInfo(tz)
        self.day_start = day_start
        self.day_end = day_end
        self._open = _tod(day_start)
        self._close = _tod(day_end)
        self.extra_workdays = frozenset(extra_workdays)
        self.extra_holidays = frozenset(extra_holidays)
        # Per instance so a long-lived calendar warns once per unknown year, not per call.
        self._warned_years: set[int] = set()
        # chinese_calendar.is_workday scans its whole holiday table on every call (min/max
        # over the keys), which dominated bulk due-time computation; answers never change.
        self._cache: dict[date, bool] = {}

    def is_workday(self, d: date) -> bool:
        cached = self._cache.get(d)
        if cached is None:
            cached = self._cache[d] = self._lookup(d)
        return cached

    def _lookup(self, d: date) -> bool:
        if d in self.extra_holidays:
            return False
        if d in self.extra_workdays:
            return True
        # Imported at the first date asked about: its tables cost every command's start.
        import chinese_calendar

        try:
            return bool(chinese_calendar.is_workday(d))
        except NotImplementedError:
            # The library only ships years the State Council has already announced; a
            # deadline must still be computed, so degrade to Mon–Fri and say so loudly.
            if d.year not in self._warned_years:
                self._warned_years.add(d.year)
                log.warning(
                    "chinesecalendar 不认识 %d 年的法定节假日，按周一至周五计算工作日"
                    "（可在策略文件 calendar.extra_holidays / extra_workdays 中补充）; "
                    "chinesecalendar has no holiday data for %d, treating Mon-Fri as "
                    "workdays (add calendar.extra_holidays / extra_workdays to the policy)",
                    d.year,
                    d.year,
                )
            return d.weekday() < 5

    # -- helpers -------------------------------------------------------------------------

    def _local(self, dt: datetime) -> datetime:
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise ValueError(f"expected an aware datetime, got naive {dt.isoformat()}")
        return dt.astimezone(self.zone)

    def _utc(self, d: date, tod: timedelta) -> datetime:
        return (datetime.combine(d, time(0), tzinfo=self.zone) + tod).astimezone(UTC)

    def _next_workday(self, d: date) -> date:
        d += timedelta(days=1)
        while not self.is_workday(d):
            d += timedelta(days=1)
        return d

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown calendar kind {kind!r}; expected one of {KINDS}")

    # -- public API ----------------------------------------------------------------------

    def add(self, start: datetime, window: timedelta, kind: str) -> datetime:
        """Due time: `window` of working time counted from `start` on calendar `kind`."""
        self._check_kind(kind)
        local = self._local(start)
        if window < timedelta(0):
            raise ValueError(f"window must not be negative, got {window}")
        if kind == "24x7":
            return start.astimezone(UTC) + window
        d, tod = local.date(), _tod(local)
        if not self.is_workday(d) or tod >= self._close:
            d, tod = self._next_workday(d), self._open
        tod = max(tod, self._open)  # before opening: the clock starts at 08:30
        remaining = window
        # One iteration per working day consumed, so long windows stay cheap.
        while remaining > self._close - tod:
            remaining -= self._close - tod
            d, tod = self._next_workday(d), self._open
        return self._utc(d, tod + remaining)

    def elapsed(self, start: datetime, end: datetime, kind: str) -> timedelta:
        """Working time between two aware instants on calendar `kind` (0 if end <= start)."""
        self._check_kind(kind)
        ls, le = self._local(start), self._local(end)
        if end <= start:
            return timedelta(0)
        if kind == "24x7":
            return end - start
        total = timedelta(0)
        d = ls.date()
        while d <= le.date():
            if self.is_workday(d):
                lo = max(self._open, _tod(ls) if d == ls.date() else self._open)
                hi = min(self._close, _tod(le) if d == le.date() else self._close)
                if hi > lo:
                    total += hi - lo
            d += timedelta(days=1)
        return total

    def add_workdays(self, start: datetime, days: int) -> datetime:
        """day_end on the `days`-th working day after start's local date, as UTC.

        days=0 means the end of today if today is a working day, else of the next one.
        """
        if days < 0:
            raise ValueError(f"days must not be negative, got {days}")
        d = self._local(start).date()
        if days == 0 and not self.is_workday(d):
            d = self._next_workday(d)
        for _ in range(days):
            d = self._next_workday(d)
        return self._utc(d, self._close)
