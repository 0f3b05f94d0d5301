"""Prefect's environment for propflow, set by the entry points before Prefect is imported.

Prefect reads its settings once, at import: its state goes under PROPFLOW_HOME and it talks to
the local server unless told otherwise. Telemetry writes collide on SQLite (DESIGN.md). Flow
runs started by `propflow serve` are child processes and inherit what is set here.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path


def configure(environ: MutableMapping[str, str] = os.environ) -> None:
    """Fill in Prefect's settings that are not already given; never overrides one."""
    home = Path(environ.get("PROPFLOW_HOME", ".propflow")).resolve()
    environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A decision should move its case on within seconds, not the default ten.
    environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "2")
    environ.setdefault(
        "PREFECT_API_URL", f"http://127.0.0.1:{environ.get('PREFECT_PORT', '4200')}/api")


# The Prefect server's own services that propflow has no use for, off wherever a server is
# started for it (scripts/run, bench/common.py, the tests). Each takes CPU and, on SQLite,
# writes that collide with the writes runs make (README "Scaling out"):
# - the scheduler: propflow creates scheduled runs itself (propflow/schedules.py), and
#   Prefect 3.8.8's fails here on every pass ("Can't evaluate bulk DML statement");
# - the event persister: writes every event (each task and flow run state change) to the
#   events tables; only the UI's Events page and automations read them back. Task runs and
#   their states still reach the UI: the task-run recorder, which stays on, records them
#   from the event stream, not from the persisted events;
# - triggers and actions (automations): propflow has none; its escalations are its own.
# And the task-run recorder writes in batches, once a second at most, instead of one write
# per task-run state (Prefect's default batch of 1): a case's opening makes 15 of them, and
# 200 cases opened at once took 166 s to be waiting with one write each, 109 s in batches
# (bench/waiting_cases.py, 2026-12-01). The UI shows a task run up to a second later.
SERVER = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}


def configure_server(environ: MutableMapping[str, str] = os.environ) -> MutableMapping[str, str]:
    """Fill in the Prefect server's settings (SERVER) not already given; returns environ."""
    for name, value in SERVER.items():
        environ.setdefault(name, value)
    return environ


if __name__ == "__main__":  # scripts/run: eval "$(python -m core.prefect_env server)"
    import shlex
    import sys

    if sys.argv[1:] != ["server"]:
        raise SystemExit("usage: python -m core.prefect_env server")
    for name, value in configure_server(dict(os.environ)).items():
        if name in SERVER:
            print(f"export {name}={shlex.quote(value)}")
