"""What each procedure's flow asks of people, readable without importing Prefect.

The policy check reads this to require a window for every step a flow can open;
tests/test_policy.py proves it matches the `ask`/`open_step` calls in flows/*.py.
"""

from __future__ import annotations

STEPS: dict[str, tuple[str, ...]] = {
    "repair": ("dispatch", "accept", "quote", "complete", "owner_acceptance", "reinspection",
               "callback", "phone_callback"),
    "complaint": ("acknowledge", "investigate", "approve_resolution", "resolve", "feedback",
                  "callback", "phone_callback"),
    "emergency": ("activate", "acknowledge", "update", "resolve", "incident_report",
                  "training_review", "receive", "handle"),
}

PRIORITIES = ("high", "medium", "low")

# Procedures whose cases carry a priority chosen by the reporter; the others use one fixed
# priority, so their steps need a `default` window (or exactly one).
PRIORITISED = {"repair"}
