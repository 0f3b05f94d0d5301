"""The checks every intake shares, in one place: each names its field and what was expected.

Used as pydantic validators on the intake models (models.intake); a check raises
PropflowError, which pydantic lets through as it is, so the message is ours, not pydantic's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ValidationInfo

from core.errors import PropflowError
from core.vocabulary import Channel
from models import limits

CHANNELS = tuple(c.value for c in Channel)  # plain strings: shown in messages
MOBILE = re.compile(r"^1[3-9]\d{9}$")


def check_phone(phone: str, field: str = "phone") -> str:
    digits = re.sub(r"[\s-]", "", phone or "").removeprefix("+86")
    if not MOBILE.match(digits):
        raise PropflowError(f"{field}：{phone!r} 不是大陆手机号；expected 11 digits starting "
                            "with 1, e.g. 13800138000", field=field)
    return digits


def check_choice(value: str, choices: tuple[str, ...] | list[str], field: str) -> str:
    if value not in choices:
        raise PropflowError(f"{field}：{value!r} 不是有效值；expected one of {list(choices)}",
                            field=field)
    return value


def require_text(value: str, field: str, expected: str) -> str:
    if not value or not value.strip():
        raise PropflowError(f"{field}：不能为空；expected {expected}", field=field)
    return value.strip()


# --- as pydantic field types ---------------------------------------------------------------

def text(expected: str, limit: int) -> AfterValidator:
    """Required text, stripped, at most `limit` characters: Annotated[str, text(...)]."""
    def check(value: str, info: ValidationInfo) -> str:
        name = info.field_name or "?"
        return limits.check_length(require_text(value, name, expected), name, limit)

    return AfterValidator(check)


def _phone(value: str, info: ValidationInfo) -> str:
    return check_phone(value, info.field_name or "phone")


def _optional_phone(value: str, info: ValidationInfo) -> str:
    return check_phone(value, info.field_name or "phone") if value else ""


Phone = Annotated[str, AfterValidator(_phone)]
OptionalPhone = Annotated[str, AfterValidator(_optional_phone)]


def choice(choices: tuple[str, ...] | Callable[[Any], Any]) -> AfterValidator:
    """One of fixed values, or of what `choices(the procedure's policy)` lists (its
    categories): Annotated[str, choice(...)]."""
    def check(value: str, info: ValidationInfo) -> str:
        allowed = choices if isinstance(choices, tuple) else choices(
            (info.context or {})["procedure"])
        return check_choice(value, list(allowed), info.field_name or "?")

    return AfterValidator(check)


IntakeChannel = Annotated[str, choice(CHANNELS)]


def _split(value: Any) -> Any:
    """"1,2" from the command line, or a list."""
    if isinstance(value, str):
        value = value.split(",")
    return [str(v).strip() for v in value or [] if str(v).strip()]


CommaList = Annotated[list[str], BeforeValidator(_split)]


def _staff_ref(value: Any) -> Any:
    return None if value in (None, "") else value


StaffRef = Annotated[int | str | None, BeforeValidator(_staff_ref)]
