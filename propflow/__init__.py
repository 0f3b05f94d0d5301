"""propflow: property-management customer-service procedures as Prefect flows."""

import os
from pathlib import Path

# Prefect reads its settings at import: put its state under PROPFLOW_HOME and point it at the
# local server unless told otherwise. Telemetry writes collide on SQLite (DESIGN.md).
_home = Path(os.environ.get("PROPFLOW_HOME", ".propflow")).resolve()
os.environ.setdefault("PREFECT_HOME", str(_home / "prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A decision should move its case on within seconds, not the default ten.
os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "2")
os.environ.setdefault(
    "PREFECT_API_URL", f"http://127.0.0.1:{os.environ.get('PREFECT_PORT', '4200')}/api"
)
