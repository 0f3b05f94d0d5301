"""Inspection rounds driven by the training clock: `propflow clock advance` makes every round
whose fire time fell in the span it moved over, as the plans' scheduled deployments would
have (the same planner, the same unique key: tasks.inspection), so a newcomer advancing a
week finds that week's rounds. The SLA pass that follows starts their runs and lapses the
rounds already over.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tasks.inspection import rounds_between

# A longer jump makes only its last week's rounds: older ones would only lapse, by the
# hundred, and say nothing a week of them does not.
CATCH_UP = timedelta(days=7)


def catch_up(before: datetime, after: datetime) -> list[str]:
    """The rounds whose fire time is in (before, after], at most the last CATCH_UP of it;
    their runs are left to the SLA pass (claimed there, so two passes start one run)."""
    return rounds_between(max(before, after - CATCH_UP), after, start=False)
