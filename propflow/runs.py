"""Talking to Prefect: start a case's run, wake a waiting run. Failures are left for the
SLA clock to retry, so nothing is lost while Prefect is away."""

from __future__ import annotations

import logging
import time
from uuid import UUID

log = logging.getLogger("propflow.runs")

DEPLOYMENTS = {p: f"{p}/{p}" for p in ("repair", "complaint", "emergency")}


def start(procedure: str, case_id: int, number: str) -> str | None:
    """Create the case's flow run from its deployment; the served runner picks it up."""
    from prefect.deployments import run_deployment

    try:
        run = run_deployment(
            DEPLOYMENTS[procedure], parameters={"case_id": case_id, "number": number},
            timeout=0, tags=[procedure, number], flow_run_name=number,
        )
    except Exception as exc:  # Prefect down or deployment not served yet: retried later
        log.warning("could not start the %s run for %s: %s", procedure, number, exc)
        return None
    return str(run.id)


def wake(flow_run_id: str | None) -> bool:
    """Resume a waiting run so it re-reads the record. False if it is not waiting or away."""
    if not flow_run_id:
        return False
    from prefect.flow_runs import resume_flow_run

    for attempt in range(5):
        try:
            resume_flow_run(UUID(flow_run_id), run_input={"signal": "wake"})
            return True
        except RuntimeError as exc:
            # A run saves its input form just after pausing: a wake in between is early.
            if "schema not found" in str(exc) and attempt < 4:
                time.sleep(0.1 * (attempt + 1))
                continue
            log.info("could not wake run %s: %s", flow_run_id, exc)
        except Exception as exc:
            log.info("could not wake run %s: %r", flow_run_id, exc)
        return False
    return False
