"""How long text and how large sums may be: one place, listed in the README (CLI, limits).

Checked in Python before anything is written: SQLite would store a too-long name silently
and PostgreSQL would refuse it with an error that quotes the whole row, phone included.
"""

from __future__ import annotations

from decimal import Decimal

from core.errors import PropflowError

NAME = 100  # reporter, complainant: cases.reporter_name String(100)
DESCRIPTION = 2000  # what is wrong: cases.description
LOCATION = 200  # an emergency's place, stored as its description
NOTE = 1000  # short form text: note, reason, diagnosis, comment, ...
REPORT = 2000  # long form text: findings, summary, incident report
URL = 500  # a photo link

INTAKE = {"reporter": NAME, "complainant": NAME, "description": DESCRIPTION,
          "location": LOCATION}

CENT = Decimal("0.01")


def check_length(value: str, field: str, limit: int) -> str:
    """The text itself never goes into the message: it may hold a phone number."""
    if len(value) > limit:
        raise PropflowError(f"{field}：太长（{len(value)} 字）；expected at most {limit} "
                            "characters", field=field)
    return value


def check_intake(**values: str) -> None:
    """An intake's own fields, by name: reporter=..., description=..."""
    for field, value in values.items():
        check_length(value, field, INTAKE[field])


def money(value: Decimal, maximum: Decimal) -> Decimal:
    """A sum in yuan: finite, not negative, whole cents, at most the policy maximum.

    Raises ValueError so that a form reports it under its own field name."""
    expected = f"expected an amount in yuan from 0 to {maximum} with at most 2 decimals"
    if not value.is_finite():
        raise ValueError(f"不是有效金额；{expected}")
    if value < 0:
        raise ValueError(f"金额不能为负；{expected}")
    if value > maximum:
        raise ValueError(f"金额超过上限 {maximum} 元（策略 limits.money_max）；{expected}")
    if value != value.quantize(CENT):
        raise ValueError(f"最多两位小数（精确到分）；{expected}")
    # 1E+3 reads as 1000 to the owner, 50.00 as 50 (the templates hide a zero sum).
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value
