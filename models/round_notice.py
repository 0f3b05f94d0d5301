"""Residents told before a plan's rounds (PROCEDURES.md §7: pest control 消杀 monthly, "notice
in every lobby two days before"): a plan of the policy with `notice: 2d` has every household
of each community told on the day that long before each firing, as the reception day's notice
is (models.reception.announce_due, models.broadcast).

Run daily by the `round_notice` duty (core/procedures.py DUTIES), by `propflow inspections
notices`, and by `propflow clock advance` in training mode. Once per plan, community and
date: the broadcast's summary row is the key, so any number of passes tell each household
once. A firing already past is not announced late.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.policy import get_policy
from models import broadcast, inspection
from models.cases import Case
from models.org import Community
from models.outbox import Notification, audit


def event_of(covers: str) -> str:
    """The notice's template (core/templates/inspection): pest control's own, else a
    plain one naming the plan."""
    return "pest_notice" if covers == "pest_control" else "round_notice"


def key(plan: str, community: str, day: str) -> str:
    return f"round_notice:{plan}:{community}:{day}"


def announce_due(session: Session, now: datetime) -> list[dict[str, Any]]:
    """Each firing of a plan with a notice whose notice day (its local date minus the
    notice) has come and which is still ahead: every community's households told, once."""
    policy = get_policy()
    told: list[dict[str, Any]] = []
    communities = list(session.scalars(select(Community).order_by(Community.id)))
    for plan_key, plan in inspection.section(policy).plans.items():
        if plan.notice is None:
            continue
        zone = ZoneInfo(plan.timezone)
        today = now.astimezone(zone).date()
        # Firings up to the notice's length ahead, counted in whole days.
        horizon = datetime.combine(today + timedelta(days=plan.notice.days + 1),
                                   datetime.min.time(), zone).astimezone(UTC)
        for fire in inspection.fire_times(policy, plan_key, now, horizon):
            local = fire.astimezone(zone)
            if (local - plan.notice).date() > today:
                continue  # its notice day is still to come
            ends = inspection.round_end(policy, plan_key, fire).astimezone(zone)
            ctx = {"plan_label": plan.label, "day": local.date().isoformat(),
                   "start": f"{local:%H:%M}", "end": f"{ends:%H:%M}"}
            for community in communities:
                notice = key(plan_key, community.code, ctx["day"])
                if session.scalar(select(Notification.id).where(
                        Notification.dedupe_key == f"{notice}|broadcast")):
                    continue
                # Not a case: a stand-in, never added to the session, lends the broadcast its
                # community and labels (as the reception day's notice does).
                about = Case(number=f"XC-{local:%Y%m%d}-{plan_key}", procedure="inspection",
                             community_id=community.id, reporter_name="",
                             reporter_phone="", description=plan.label, data={})
                households = broadcast.to_residents(
                    session, about, event_of(plan.covers), key=notice, now=now,
                    community_name=community.name, **ctx)
                audit(session, at=now, actor="schedule", action="round_notice_sent",
                      plan=plan_key, community=community.code, day=ctx["day"],
                      households=households)
                told.append({"plan": plan_key, "community": community.code,
                             "day": ctx["day"], "households": households})
    return told


__all__ = ["announce_due", "event_of", "key"]
