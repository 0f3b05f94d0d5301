"""Residents told before a plan's rounds (models/round_notice.py). Idempotent."""

from __future__ import annotations

from typing import Any

from core.clock import now
from models import round_notice
from models.db import unit_of_work
from tasks.retries import db_task


def announce_round_notices() -> list[dict[str, Any]]:
    """Every household told of each firing whose notice day has come, once."""
    with unit_of_work() as session:
        return round_notice.announce_due(session, now())


# The duty's step, retried like the other database tasks.
announce = db_task(name="announce-round-notices")(announce_round_notices)
