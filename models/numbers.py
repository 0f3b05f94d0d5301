"""Human-readable case numbers: BX-20261124-0001, gap-free per prefix and local day."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.cases import CaseCounter
from models.db import rowcount


def next_number(session: Session, prefix: str, now: datetime, tz: str) -> str:
    day = now.astimezone(ZoneInfo(tz)).strftime("%Y%m%d")
    key = f"{prefix}-{day}"
    for _ in range(5):
        bumped = rowcount(session.execute(
            update(CaseCounter).where(CaseCounter.prefix == key)
            .values(last=CaseCounter.last + 1).execution_options(synchronize_session=False)
        ))
        if bumped:
            last = session.scalar(select(CaseCounter.last).where(CaseCounter.prefix == key))
            return f"{key}-{last:04d}"
        try:
            with session.begin_nested():
                session.add(CaseCounter(prefix=key, last=1))
            return f"{key}-0001"
        except IntegrityError:
            continue  # another process created the day's counter first; bump it instead
    raise RuntimeError(f"could not number a case for {key}")
