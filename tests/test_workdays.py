"""Due-time arithmetic on real Chinese calendar dates (chinesecalendar 1.11 data)."""

import logging
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest

from core.workdays import BusinessCalendar, parse_window

SH = ZoneInfo("Asia/Shanghai")
H = timedelta(hours=1)


def local(*args: int) -> datetime:
    """A Shanghai wall-clock time as the aware-UTC instant the API takes."""
    return datetime(*args, tzinfo=SH).astimezone(UTC)


@pytest.fixture
def cal() -> BusinessCalendar:
    return BusinessCalendar()


def test_library_data_these_tests_rely_on():
    # National Day 2025: 10-01..10-08 off, Sunday 09-28 and Saturday 10-11 are 调休 workdays.
    assert chinese_calendar.is_workday(date(2025, 9, 28))
    assert chinese_calendar.is_workday(date(2025, 10, 11))
    assert not any(chinese_calendar.is_workday(date(2025, 10, d)) for d in range(1, 9))
    # Spring Festival 2026: 02-15..02-23 off, Saturdays 02-14 and 02-28 are 调休 workdays.
    assert chinese_calendar.is_workday(date(2026, 2, 14))
    assert not any(chinese_calendar.is_workday(date(2026, 2, d)) for d in range(15, 24))


def test_window_across_weekend(cal):
    due = cal.add(local(2025, 11, 28, 16, 30), 2 * H, "business")  # Friday
    assert due == local(2025, 12, 1, 9, 30)  # Monday
    assert due.tzinfo == UTC


def test_window_across_national_day_2025(cal):
    due = cal.add(local(2025, 9, 30, 16, 30), 2 * H, "business")
    assert due == local(2025, 10, 9, 9, 30)


def test_makeup_workday_sunday_counts(cal):
    assert cal.is_workday(date(2025, 9, 28))  # Sunday, 调休
    assert not cal.is_workday(date(2025, 9, 27))  # plain Saturday
    due = cal.add(local(2025, 9, 27, 10, 0), 2 * H, "business")
    assert due == local(2025, 9, 28, 10, 30)


def test_window_across_spring_festival_2026(cal):
    # Opened late on the 调休 Saturday before the holiday: resumes on Tuesday 02-24.
    due = cal.add(local(2026, 2, 14, 17, 0), 2 * H, "business")
    assert due == local(2026, 2, 24, 10, 0)
    # Friday before: the rest spills onto the make-up Saturday, not Monday.
    assert cal.add(local(2026, 2, 13, 17, 0), H, "business") == local(2026, 2, 14, 9, 0)


@pytest.mark.parametrize(
    ("opened", "due"),
    [
        (local(2025, 12, 1, 7, 0), local(2025, 12, 1, 9, 0)),  # before opening
        (local(2025, 12, 1, 20, 0), local(2025, 12, 2, 9, 0)),  # evening -> next morning
        (local(2025, 11, 28, 20, 0), local(2025, 12, 1, 9, 0)),  # Friday evening -> Monday
        (local(2025, 12, 1, 17, 30), local(2025, 12, 2, 9, 0)),  # exactly at closing
        (local(2025, 11, 29, 11, 0), local(2025, 12, 1, 9, 0)),  # Saturday daytime
        (local(2025, 12, 1, 3, 0), local(2025, 12, 1, 9, 0)),  # 03:00 local is prior day UTC
    ],
)
def test_out_of_hours_start_counts_from_next_opening(cal, opened, due):
    assert cal.add(opened, timedelta(minutes=30), "business") == due


def test_window_filling_the_day_ends_at_closing_not_next_morning(cal):
    assert cal.add(local(2025, 12, 1, 8, 30), 9 * H, "business") == local(2025, 12, 1, 17, 30)
    assert cal.add(local(2025, 12, 1, 8, 30), 9 * H + timedelta(seconds=1), "business") == local(
        2025, 12, 2, 8, 30, 1
    )


def test_long_window_spans_many_days(cal):
    # 48 working hours = 5 days of 9h + 3h; Mon 12-01 08:30 -> Mon 12-08 11:30.
    assert cal.add(local(2025, 12, 1, 8, 30), 48 * H, "business") == local(2025, 12, 8, 11, 30)


def test_24x7_is_plain_elapsed_time(cal):
    start = local(2025, 9, 30, 16, 30)
    assert cal.add(start, 2 * H, "24x7") == local(2025, 9, 30, 18, 30)
    assert cal.elapsed(start, local(2025, 10, 1, 16, 30), "24x7") == 24 * H


def test_extra_holiday_and_extra_workday_overrides():
    cal = BusinessCalendar(extra_holidays=[date(2025, 12, 1)])
    assert not cal.is_workday(date(2025, 12, 1))
    assert cal.add(local(2025, 11, 28, 16, 30), 2 * H, "business") == local(2025, 12, 2, 9, 30)

    cal = BusinessCalendar(extra_workdays=[date(2025, 11, 29)])
    assert cal.is_workday(date(2025, 11, 29))
    assert cal.add(local(2025, 11, 28, 16, 30), 2 * H, "business") == local(2025, 11, 29, 9, 30)

    # A company holiday on a statutory 调休 day still wins.
    cal = BusinessCalendar(extra_workdays=[date(2025, 9, 28)], extra_holidays=[date(2025, 9, 28)])
    assert not cal.is_workday(date(2025, 9, 28))


def test_unknown_year_falls_back_to_weekdays_and_warns_once(caplog):
    cal = BusinessCalendar(extra_holidays=[date(2030, 1, 1)])
    with caplog.at_level(logging.WARNING, logger="propflow.workdays"):
        assert cal.is_workday(date(2030, 1, 2))  # Wednesday
        assert not cal.is_workday(date(2030, 1, 5))  # Saturday
        assert not cal.is_workday(date(2030, 1, 1))  # override still applies
        # Friday 2030-01-04 16:30 + 2h -> Monday 2030-01-07 09:30
        assert cal.add(local(2030, 1, 4, 16, 30), 2 * H, "business") == local(2030, 1, 7, 9, 30)
        for _ in range(50):
            cal.is_workday(date(2030, 3, 4))
    warnings = [r for r in caplog.records if r.name == "propflow.workdays"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    msg = warnings[0].getMessage()
    assert "2030" in msg and "周一至周五" in msg and "extra_holidays" in msg

    with caplog.at_level(logging.WARNING, logger="propflow.workdays"):
        cal.is_workday(date(2031, 1, 6))
    assert sum("2031" in r.getMessage() for r in caplog.records) == 1


def test_add_workdays_across_national_day(cal):
    # Tue 09-30: 1st working day after is 10-09, 2nd is 10-10.
    assert cal.add_workdays(local(2025, 9, 30, 10, 0), 2) == local(2025, 10, 10, 17, 30)
    # Fri 09-26: Sunday 09-28 (调休) is the 1st, Mon 09-29 the 2nd.
    assert cal.add_workdays(local(2025, 9, 26, 14, 0), 2) == local(2025, 9, 29, 17, 30)
    # Uses the *local* date: 2025-09-30 23:00 local is still 09-30 15:00 UTC.
    assert cal.add_workdays(local(2025, 9, 30, 23, 0), 1) == local(2025, 10, 9, 17, 30)
    assert cal.add_workdays(local(2025, 10, 3, 9, 0), 0) == local(2025, 10, 9, 17, 30)


@pytest.mark.parametrize(
    ("start", "window"),
    [
        (local(2025, 9, 30, 16, 30), 2 * H),
        (local(2025, 11, 28, 20, 0), timedelta(minutes=30)),
        (local(2026, 2, 12, 9, 15), 48 * H),
        (local(2025, 12, 1, 8, 30), 9 * H),
        (local(2025, 12, 31, 12, 0, 7), timedelta(hours=5, seconds=13)),
    ],
)
def test_elapsed_is_inverse_of_add(cal, start, window):
    assert cal.elapsed(start, cal.add(start, window, "business"), "business") == window


def test_elapsed_edges(cal):
    a, b = local(2025, 10, 1, 9, 0), local(2025, 10, 8, 17, 0)
    assert cal.elapsed(a, b, "business") == timedelta(0)  # whole holiday
    assert cal.elapsed(b, a, "business") == timedelta(0)
    assert cal.elapsed(b, a, "24x7") == timedelta(0)
    # Sat 07:00 -> Mon 10:00 counts only Monday 08:30-10:00.
    assert cal.elapsed(local(2025, 11, 29, 7), local(2025, 12, 1, 10), "business") == 1.5 * H


def test_rejects_naive_datetimes_and_unknown_kind(cal):
    naive = datetime(2025, 12, 1, 9, 0)
    aware = local(2025, 12, 1, 9, 0)
    with pytest.raises(ValueError, match="expected an aware datetime"):
        cal.add(naive, H, "business")
    with pytest.raises(ValueError, match="expected an aware datetime"):
        cal.elapsed(aware, naive, "24x7")
    with pytest.raises(ValueError, match="expected an aware datetime"):
        cal.add_workdays(naive, 1)
    with pytest.raises(ValueError, match=r"'workdays'.*24x7.*business"):
        cal.add(aware, H, "workdays")
    with pytest.raises(ValueError, match="'office'"):
        cal.elapsed(aware, aware, "office")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5m", timedelta(minutes=5)),
        ("30m", timedelta(minutes=30)),
        ("2h", 2 * H),
        ("48h", 48 * H),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("90s", timedelta(seconds=90)),
        (" 2H ", 2 * H),
    ],
)
def test_parse_window_good(text, expected):
    assert parse_window(text) == expected


@pytest.mark.parametrize("text", ["", "2x", "0m", "-5m", "h", "30", "1.5h", "30m1h", "2 h"])
def test_parse_window_bad_names_the_text(text):
    with pytest.raises(ValueError, match=re.escape(repr(text))) as exc:
        parse_window(text)
    assert "expected e.g. 30m, 2h, 1d, 1h30m" in str(exc.value)
