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
