"""The three built procedures as PROCEDURES.md §10 reads the seeds (fast tier: no Prefect).

Windows count clock time unless the policy says otherwise; owners get owner messages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from core.clock import now
from models import directory, steps
from models.db import unit_of_work
from models.outbox import Notification
from propflow import actions
from tests.conftest import SHANGHAI
from tests.flowkit import REPAIR
from tests.test_policy import broken, refused

PHONE = "13800138000"


def open_step(number: str, key: str, kind: str, role: str, assignee: int | None = None,
              ) -> dict[str, Any]:
    with unit_of_work() as session:
        case = directory.case(session, number)
        step = steps.open_step(session, case=case, key=key, kind=kind, role=role,
                               assignee_id=assignee, now=now())
        return {"id": step.id, "due": step.due_at.astimezone(SHANGHAI), "calendar": step.calendar}


def repair(**fields: Any) -> str:
    number: str = actions.open_repair(start_run=False, **REPAIR | {"phone": PHONE} | fields)[
        "number"]
    return number


def messages(recipient_prefix: str, event: str | None = None) -> list[Notification]:
    with unit_of_work() as session:
        query = select(Notification).where(Notification.recipient.startswith(recipient_prefix),
                                           Notification.channel == "inbox")
        if event:
            query = query.where(Notification.event == event)
        rows = list(session.scalars(query.order_by(Notification.id)))
        session.expunge_all()
        return rows


# --- windows ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("priority", "due"), [
    ("high", datetime(2026, 11, 24, 13, 0)),    # 4 h
    ("medium", datetime(2026, 11, 25, 9, 0)),   # 24 h, the seed's broken lamp
    ("low", datetime(2026, 11, 27, 9, 0)),      # 72 h
])
def test_completion_windows_count_clock_time(demo, clock, priority, due):
    number = repair(priority=priority, description="楼道灯不亮")  # no safety word: as given
    step = open_step(number, "complete#1", "complete", "technician", demo["by_role"]["technician"])
    assert step["due"] == due.replace(tzinfo=SHANGHAI) and step["calendar"] == "24x7"


def test_owner_promises_count_clock_time_and_short_staff_windows_office_hours(demo, clock):
    number = repair()
    # The owner's acceptance, the rating: 24 h of clock time, not 24 working hours.
    for kind in ("owner_acceptance", "callback", "quote"):
        assert open_step(number, f"{kind}#1", kind, "owner")["due"] == datetime(
            2026, 11, 25, 9, 0, tzinfo=SHANGHAI)
    # A disputed result is re-inspected within 48 h of clock time.
    assert open_step(number, "reinspection#1", "reinspection", "tech_supervisor")["due"] == \
        datetime(2026, 11, 26, 9, 0, tzinfo=SHANGHAI)
    # Where the policy says so, a short staff window counts office hours.
    clock.set(datetime(2026, 11, 24, 17, 15, tzinfo=SHANGHAI))
    accept = open_step(number, "accept#1", "accept", "technician", demo["by_role"]["technician"])
    assert (accept["due"], accept["calendar"]) == (
        datetime(2026, 11, 25, 8, 45, tzinfo=SHANGHAI), "business")


def test_a_window_longer_than_a_working_day_on_office_hours_is_refused(policy_with):
    def edit(p: dict) -> None:
        p["procedures"]["repair"]["steps"]["complete"]["medium"] = {
            "window": "24h", "calendar": "business"}

    refused(broken(policy_with, edit), "procedures.repair.steps.complete.medium.calendar",
            "不能超过一个工作日", "9h", "calendar: 24x7")

