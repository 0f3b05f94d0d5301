"""Resident ID-card numbers (居民身份证号码): checked, stored encrypted, shown masked.

PROCEDURES.md §9: an ID number is never stored or shown in the clear. It is encrypted with
Fernet (AES-128-CBC and HMAC-SHA256) under the key in PROPFLOW_ID_KEY — every replica must
share it — or, when that is unset, a key made once in PROPFLOW_HOME/id_key (a single
machine, the demo). What is shown anywhere is the mask, 110101********1234; no error or log
line carries the number.
"""

from __future__ import annotations

import os
import re
from datetime import date
from functools import cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.errors import PropflowError
from core.settings import get_settings
from models.db import Base

KEY_ENV = "PROPFLOW_ID_KEY"
_SHAPE = re.compile(r"^\d{17}[\dX]$")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"  # GB 11643-1999: the check character by the weighted sum mod 11


class IdentityNumber(Base):
    """One person's ID number on a case (the owner, an agent): cipher text and its mask."""

    __tablename__ = "identity_numbers"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    person: Mapped[str] = mapped_column(String(20))  # owner, agent
    cipher: Mapped[str] = mapped_column(Text)  # Fernet token
    masked: Mapped[str] = mapped_column(String(24))


def check(value: str, field: str) -> str:
    """An 18-character resident ID number with a valid check digit and birth date. The
    refusal names the field and never repeats the number."""
    number = (value or "").strip().upper()
    if not _SHAPE.match(number):
        raise PropflowError(f"{field}：不是18位身份证号；expected 17 digits then a digit or X",
                            field=field)
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        born = None
    if born is None or born.year < 1900:
        raise PropflowError(f"{field}：身份证号中的出生日期无效；expected digits 7-14 to be a "
                            "birth date (YYYYMMDD)", field=field)
    total = sum(int(d) * w for d, w in zip(number[:17], _WEIGHTS, strict=True))
    if _CHECK[total % 11] != number[17]:
        raise PropflowError(f"{field}：身份证号校验位不符（可能输错了一位）；expected an ID "
                            "number whose last character is its GB 11643 check digit",
                            field=field)
    return number


def mask(number: str) -> str:
    """110101********1234: the region and the last four, as staff may see it."""
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


@cache
def _fernet(key: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except (ValueError, TypeError):
        raise PropflowError(f"{KEY_ENV}：不是有效的密钥；expected a Fernet key (32 bytes, "
                            "url-safe base64), e.g. from `python -c \"from cryptography.fernet "
                            "import Fernet; print(Fernet.generate_key().decode())\"`",
                            field=KEY_ENV) from None


def _key() -> str:
    key = os.environ.get(KEY_ENV, "").strip()
    if key:
        return key
    path = Path(get_settings().home) / "id_key"
    if not path.exists():
        # Written whole, then linked into place: of two processes making it at once, one
        # key wins and both read it.
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f"id_key.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(Fernet.generate_key().decode())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def encrypt(number: str) -> str:
    return _fernet(_key()).encrypt(number.encode()).decode()


def decrypt(cipher: str) -> str:
    """For the product's own exports only; a wrong key is refused, never guessed around."""
    try:
        return _fernet(_key()).decrypt(cipher.encode()).decode()
    except InvalidToken:
        raise PropflowError(f"{KEY_ENV}：密钥与加密时的不一致；expected the key the numbers "
                            "were stored with", field=KEY_ENV) from None


def store(session: Session, case_id: int, person: str, number: str) -> IdentityNumber:
    row = IdentityNumber(case_id=case_id, person=person, cipher=encrypt(number),
                         masked=mask(number))
    session.add(row)
    return row


def masked_of(session: Session, case_id: int) -> dict[str, str]:
    """person -> masked number, for display."""
    rows = session.execute(select(IdentityNumber.person, IdentityNumber.masked)
                           .where(IdentityNumber.case_id == case_id)
                           .order_by(IdentityNumber.id))
    return {str(person): str(shown) for person, shown in rows}
