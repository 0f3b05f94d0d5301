"""Cases, their human steps, decisions and escalations: the record of what happened."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from core.vocabulary import CaseStatus, StepStatus
from models.db import Base, UTCDateTime, rowcount, words


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)  # BX-20261124-0001
    procedure: Mapped[str] = mapped_column(String(40))
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), nullable=True)
    status: Mapped[CaseStatus] = mapped_column(words(CaseStatus, 30), default=CaseStatus.OPEN)
    category: Mapped[str | None] = mapped_column(String(40), nullable=True)
    priority: Mapped[str | None] = mapped_column(String(10), nullable=True)
    paid: Mapped[bool] = mapped_column(Boolean, default=False)
    channel: Mapped[str] = mapped_column(String(20), default="phone")
    reporter_name: Mapped[str] = mapped_column(String(100))
    reporter_phone: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    flow_run_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # The start of its run is claimed (replicas never start one twice), then supervised.
    run_claimed_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    run_claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    run_state: Mapped[str | None] = mapped_column(String(30), nullable=True)
    run_restarts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    run_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    run_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    steps: Mapped[list[Step]] = relationship(
        back_populates="case", order_by="Step.id", lazy="selectin"
    )


class Step(Base):
    """A typed decision asked of a role (or one person), with a response window."""

    __tablename__ = "steps"
    __table_args__ = (
        UniqueConstraint("case_id", "key"),
        # The SLA pass's two questions (migration 0005): due by now, warned by now at level 0.
        Index("ix_steps_status_due_at", "status", "due_at"),
        Index("ix_steps_status_level_warn_at", "status", "level", "warn_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    key: Mapped[str] = mapped_column(String(60))  # stable under flow replay: accept#1
    kind: Mapped[str] = mapped_column(String(40))
    role: Mapped[str] = mapped_column(String(40))  # "owner" for the resident's own steps
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), nullable=True)
    status: Mapped[StepStatus] = mapped_column(words(StepStatus, 20), default=StepStatus.WAITING,
                                               index=True)
    calendar: Mapped[str] = mapped_column(String(20), default="business")
    window_seconds: Mapped[int] = mapped_column(Integer)
    on_lapse: Mapped[str] = mapped_column(String(20), default="escalate")  # or "expire"
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    warn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    level: Mapped[int] = mapped_column(Integer, default=0)  # 0 = the assignee
    breached: Mapped[bool] = mapped_column(Boolean, default=False)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Approval operations (models/operations.py, migration 0008): who claimed it from its
    # role; the step that replaces it once sent back or withdrawn; cancelled by such a
    # rewind, so that asking it again opens a new one.
    claimed_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    replaced_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rewound: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    case: Mapped[Case] = relationship(back_populates="steps")
    decision: Mapped[Decision | None] = relationship(
        back_populates="step", uselist=False, lazy="selectin"
    )
    escalations: Mapped[list[Escalation]] = relationship(
        back_populates="step", order_by="Escalation.level", lazy="selectin"
    )


class Decision(Base):
    __tablename__ = "decisions"
    id: Mapped[int] = mapped_column(primary_key=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("steps.id"), unique=True)  # only once
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), nullable=True)
    on_behalf_of_owner: Mapped[bool] = mapped_column(Boolean, default=False)
    channel: Mapped[str] = mapped_column(String(20))  # cli, api, web, prefect_ui, owner_app
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    comment: Mapped[str] = mapped_column(Text, default="")
    override: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    step: Mapped[Step] = relationship(back_populates="decision")


class Escalation(Base):
    """One lapse of one step at one level; the unique key is the claim."""

    __tablename__ = "escalations"
    __table_args__ = (UniqueConstraint("step_id", "level"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("steps.id"), index=True)
    level: Mapped[int] = mapped_column(Integer)  # the level reached by this escalation
    to_role: Mapped[str | None] = mapped_column(String(40), nullable=True)
    lapsed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str] = mapped_column(String(80), default="")
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    step: Mapped[Step] = relationship(back_populates="escalations")


class CaseCounter(Base):
    """Per prefix and day, the last number given: numbers are gap-free and never reused."""

    __tablename__ = "case_counters"
    prefix: Mapped[str] = mapped_column(String(20), primary_key=True)
    last: Mapped[int] = mapped_column(Integer, default=0)


class SimClock(Base):
    """The training-mode clock every process shares; it only moves forward."""

    __tablename__ = "sim_clock"
    id: Mapped[int] = mapped_column(primary_key=True)
    now: Mapped[datetime] = mapped_column(UTCDateTime)


class CaseLink(Base):
    """A complaint about a repair, or a case opened from another: both timelines show it."""

    __tablename__ = "case_links"
    __table_args__ = (UniqueConstraint("from_case_id", "to_case_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    from_case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    to_case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    relation: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


def mark_decided(session: Session, step: Step, now: datetime) -> bool:
    """Make a waiting step decided, once: False when another got there first (whoever
    writes the step's one Decision calls this first; a step past due stays breached)."""
    return bool(rowcount(session.execute(
        update(Step).where(Step.id == step.id, Step.status == StepStatus.WAITING)
        .values(status=StepStatus.DECIDED, decided_at=now,
                breached=Step.breached | (Step.due_at < now))
        .execution_options(synchronize_session=False))))


def step_by_key(session: Session, case_id: int, key: str) -> Step | None:
    """The case's step asked under this key: the instance that replaced it since, if it was
    sent back or withdrawn (models.operations)."""
    found = session.scalars(select(Step).where(Step.case_id == case_id, Step.key == key)).first()
    while found is not None and found.replaced_by:
        found = session.get(Step, found.replaced_by)
    return found
