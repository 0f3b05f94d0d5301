"""What a flow gets back from a human step: how it settled and, if decided, the answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.vocabulary import StepStatus


@dataclass(frozen=True)
class StepOutcome:
    """A settled step (decided, lapsed or cancelled), as the record says.

    Only a decision has values: a lapsed or cancelled step answered nothing, so `values` is
    empty and the accessors give their defaults. A decision's values passed its form
    (models.forms), so a required field is always there.
    """

    step_id: int
    key: str  # the flow's own name for it: accept#1
    status: StepStatus
    values: Mapping[str, Any] = field(default_factory=dict)
    decided_by: int | None = None  # the staff member who decided it
    settled_at: datetime | None = None

    @classmethod
    def from_state(cls, step_id: int, state: Mapping[str, Any]) -> StepOutcome:
        """From tasks.steps.read_steps: live, or from the run's journal (plain JSON)."""
        status = StepStatus(state["status"])
        decided = status == StepStatus.DECIDED
        settled = state.get("settled_at")
        return cls(step_id=step_id, key=state.get("key", ""), status=status,
                   values=dict(state["values"]) if decided else {},
                   decided_by=state["decided_by"] if decided else None,
                   settled_at=datetime.fromtimestamp(settled, UTC) if settled else None)

    @property
    def decided(self) -> bool:
        return self.status == StepStatus.DECIDED

    @property
    def lapsed(self) -> bool:
        """Past its window with nobody deciding (a step that expires instead of escalating)."""
        return self.status == StepStatus.LAPSED

    @property
    def cancelled(self) -> bool:
        return self.status == StepStatus.CANCELLED

    def flag(self, name: str, default: bool = False) -> bool:
        """A yes/no field: `default` when the step was not decided or left it out."""
        value = self.values.get(name)
        return default if value is None else bool(value)

    def text(self, name: str) -> str:
        """A text field, or "" when absent or empty."""
        value = self.values.get(name)
        return "" if value is None else str(value)

    def number(self, name: str) -> int | None:
        """A whole-number field (a rating, a staff id), or None when absent."""
        value = self.values.get(name)
        return None if value is None else int(value)
