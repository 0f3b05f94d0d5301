"""A small month of cases whose figures a person can count by hand, written straight into
the record (cases, steps, decisions, escalations) as the flows would have left them.

November 2026 in YGHY, Shanghai time (UTC+8). Each case says what it counts for.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.vocabulary import CaseStatus, StepStatus
from models.cases import Case, Decision, Escalation, Step
from models.org import Community, Unit

SH = ZoneInfo("Asia/Shanghai")
PHONES = {"A": "13911110001", "B": "13911110002", "C": "13911110003"}  # the reporters'


def at(day: str, hm: str = "10:00") -> datetime:
    """A Shanghai wall-clock time: at("11-03", "14:00")."""
    month, d = (int(x) for x in day.split("-"))
    h, m = (int(x) for x in hm.split(":"))
    return datetime(2026, month, d, h, m, tzinfo=SH)


class Month:
    def __init__(self, session: Session, community: str = "YGHY") -> None:
        self.session = session
        self.community = session.scalars(select(Community).where(Community.code == community)).one()
        units = list(session.scalars(select(Unit).where(Unit.community_id == self.community.id)
                                     .order_by(Unit.id)).all())
        self.units = {"A": units[0], "B": units[1], "C": units[2]}
        self.n = 0

    def case(self, procedure: str, category: str, unit: str, created: datetime, *,
             closed: datetime | None = None, outcome: str | None = None) -> Case:
        self.n += 1
        prefix = {"repair": "BX", "complaint": "TS"}.get(procedure, "XC")
        found = Case(number=f"{prefix}-T-{self.n:04d}", procedure=procedure,
                     community_id=self.community.id, unit_id=self.units[unit].id,
                     status=CaseStatus.CLOSED if closed else CaseStatus.IN_PROGRESS,
                     category=category, priority="medium", reporter_name=f"业主{unit}",
                     reporter_phone=PHONES[unit], description="测试", data={},
                     created_at=created, closed_at=closed, outcome=outcome)
        self.session.add(found)
        self.session.flush()
        return found

    def step(self, case: Case, key: str, *, opened: datetime, due: datetime,
             decided: datetime | None = None, values: dict[str, Any] | None = None,
             breached: bool | None = None, role: str = "technician", level: int = 0) -> Step:
        kind = key.split("#")[0]
        step = Step(case_id=case.id, key=key, kind=kind, role=role,
                    status=StepStatus.DECIDED if decided else StepStatus.WAITING,
                    calendar="24x7", window_seconds=int((due - opened).total_seconds()),
                    opened_at=opened, due_at=due, decided_at=decided, level=level,
                    breached=(bool(decided and decided > due) or level > 0) if breached is None
                    else breached,
                    context={})
        self.session.add(step)
        self.session.flush()
        if decided:
            self.session.add(Decision(step_id=step.id, channel="cli", values=values or {},
                                      created_at=decided))
        return step

    def escalate(self, step: Step, level: int, lapsed: datetime) -> None:
        self.session.add(Escalation(step_id=step.id, level=level, to_role="cs_supervisor",
                                    lapsed_at=lapsed, claimed_at=lapsed, claimed_by="test"))
        self.session.flush()

    def repair(self, category: str, unit: str, created: datetime, *, done_after: float | None,
               rating: int | None = None, rated: datetime | None = None,
               refused: bool = False, redo: bool = False, late: bool = False,
               closed: datetime | None = None) -> Case:
        """A repair; `done_after` hours from receipt to its (last) completion; `refused`:
        the owner refused the first completion and a re-inspection followed, `redo` whether
        it ordered the work redone (a second completion, `done_after` hours in)."""
        c = self.case("repair", category, unit, created,
                      closed=closed or (created + timedelta(hours=(done_after or 0) + 20)
                                        if done_after is not None else None),
                      outcome="done" if done_after is not None else None)
        if done_after is None:
            return c
        first = created + timedelta(hours=done_after / 2 if redo else done_after)
        window = timedelta(hours=24)
        self.step(c, "complete#1", opened=created, due=created + window, decided=first,
                  breached=late)
        self.step(c, "owner_acceptance#1", opened=first, due=first + window,
                  decided=first + timedelta(hours=1), values={"accepted": not refused},
                  role="owner")
        if refused:
            self.step(c, "reinspection#1", opened=first + timedelta(hours=1),
                      due=first + timedelta(hours=49), decided=first + timedelta(hours=2),
                      values={"redo": redo}, role="tech_supervisor")
        if redo:
            last = created + timedelta(hours=done_after)
            self.step(c, "complete#2", opened=first + timedelta(hours=2),
                      due=first + timedelta(hours=3), decided=last)  # late: past its due
            self.step(c, "owner_acceptance#2", opened=last, due=last + window,
                      decided=last + timedelta(hours=1), values={"accepted": True}, role="owner")
        if rating is not None:
            when = rated or created + timedelta(hours=done_after + 10)
            self.step(c, "callback#1", opened=when - timedelta(hours=2), due=when + window,
                      decided=when, values={"reached": True, "rating": rating}, role="owner")
        return c


def november(session: Session, *, rounds: bool = False) -> dict[str, Any]:
    """The month; returns its cases by name. What it should count: tests/test_monthly_report."""
    m = Month(session)
    c: dict[str, Any] = {}
    # October, before the month: R0 is what R5 repeats (same unit, same category, an hour
    # before); R8 is 41 days before R6 (same unit and category): outside the 30 days.
    c["R0"] = m.repair("in_unit", "C", at("10-31", "23:30"), done_after=0.25, rating=1,
                       rated=at("10-31", "23:50"), closed=at("10-31", "23:55"))
    c["R8"] = m.repair("civil", "C", at("10-20", "23:00"), done_after=3)
    # November.
    c["R1"] = m.repair("water_electric", "A", at("11-03", "10:00"), done_after=4, rating=5)
    c["R2"] = m.repair("water_electric", "A", at("11-20", "10:00"), done_after=48, rating=4,
                       refused=True, redo=True)  # repeat of R1; rework
    c["R3"] = m.repair("public_area", "B", at("11-05", "10:00"), done_after=2, rating=2,
                       refused=True, late=True)  # disputed, upheld: not rework, not first-time
    c["R4"] = m.repair("public_area", "B", at("11-10", "10:00"), done_after=None)  # repeat, open
    c["R5"] = m.repair("in_unit", "C", at("11-01", "00:30"), done_after=6, rating=3)  # repeat
    c["R6"] = m.repair("civil", "C", at("11-30", "23:30"), done_after=None)
    # December (Shanghai), though still 30 November in UTC: not counted.
    c["R7"] = m.repair("water_electric", "A", at("12-01", "00:10"), done_after=None)
    # Complaints: environment twice, noise once; one in October.
    c["C1"] = m.case("complaint", "environment", "A", at("11-08"))
    m.step(c["C1"], "callback#1", opened=at("11-09", "09:00"), due=at("11-10"),
           decided=at("11-09"), values={"reached": True, "rating": 4}, role="owner")
    c["C2"] = m.case("complaint", "environment", "B", at("11-12"))
    c["C3"] = m.case("complaint", "noise", "C", at("11-15"))
    c["C4"] = m.case("complaint", "fees", "C", at("10-30"))
    # Escalations: R4's dispatch lapsed twice (levels 1, 2), C2's acknowledgement once;
    # October's does not count.
    dispatch = m.step(c["R4"], "dispatch#1", opened=at("11-10"), due=at("11-10", "10:30"),
                      decided=at("11-10", "12:00"), role="tech_supervisor", level=2)
    m.escalate(dispatch, 1, at("11-10", "10:30"))
    m.escalate(dispatch, 2, at("11-10", "11:30"))
    ack = m.step(c["C2"], "acknowledge#1", opened=at("11-12"), due=at("11-12", "10:30"),
                 decided=at("11-12", "12:00"), role="csr", level=1)
    m.escalate(ack, 1, at("11-12", "10:30"))
    old = m.step(c["C4"], "acknowledge#1", opened=at("10-30"), due=at("10-30", "10:30"),
                 decided=at("10-30", "12:00"), role="csr", level=1)
    m.escalate(old, 1, at("10-30", "10:30"))
    # R6's acceptance still waits, past its due time before the month ended: late.
    m.step(c["R6"], "accept#1", opened=at("11-30", "23:30"), due=at("11-30", "23:50"))
    if rounds:  # two rounds of the inspection procedure: one on time, one late
        for name, late in (("I1", False), ("I2", True)):
            r = c[name] = m.case("inspection", "public_facilities", "A", at("11-06", "08:30"))
            m.step(r, "checkpoint#1", opened=at("11-06", "08:30"), due=at("11-06", "12:00"),
                   decided=at("11-06", "09:00"), role="steward")
            m.step(r, "checkpoint#2", opened=at("11-06", "08:30"), due=at("11-06", "12:00"),
                   decided=at("11-06", "13:00" if late else "10:00"), role="steward")
    session.flush()
    return c
