"""The words of the record: statuses, roles, intake channels, priorities.

StrEnums, so each member is the very string stored in the database and written to JSON,
messages and logs (`CaseStatus.OPEN == "open"`): nothing stored changes, while mypy sees a
misspelt status and the tables refuse a status that is not one of these.
"""

from __future__ import annotations

from enum import StrEnum


class CaseStatus(StrEnum):
    OPEN = "open"  # recorded; its run has not yet linked itself
    IN_PROGRESS = "in_progress"
    CLOSED = "closed"
    STUCK = "stuck"  # its run kept failing: run supervision gave up and told company_cs


class StepStatus(StrEnum):
    WAITING = "waiting"
    DECIDED = "decided"
    LAPSED = "lapsed"  # past its window with on_lapse: expire; nothing was decided
    CANCELLED = "cancelled"  # the flow no longer needs it (an emergency resolved)


# A step settled one way or another: a flow waiting on it goes on.
SETTLED = frozenset({StepStatus.DECIDED, StepStatus.LAPSED, StepStatus.CANCELLED})


class Role(StrEnum):
    """Who a step, a message or an escalation is for. core.roles gives their labels."""

    CSR = "csr"
    STEWARD = "steward"
    CS_SUPERVISOR = "cs_supervisor"
    CS_DIRECTOR = "cs_director"
    PROJECT_MANAGER = "project_manager"
    COMPANY_CS = "company_cs"
    DISPATCHER = "dispatcher"
    TECHNICIAN = "technician"
    TECH_SUPERVISOR = "tech_supervisor"
    SECURITY = "security"
    CLEANING = "cleaning"
    PR = "pr"
    HR = "hr"
    VENDOR = "vendor"
    DEVELOPER_WARRANTY = "developer_warranty"
    # The resident: a step may wait on them (the front desk records it); no staff holds it.
    OWNER = "owner"


class Channel(StrEnum):
    """How a case reached us."""

    PHONE = "phone"
    ONLINE = "online"
    FRONT_DESK = "front_desk"
    PATROL = "patrol"


class Priority(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
