"""prefect.yaml, generated from the procedure registry (core/procedures.py).

`propflow deployments write` writes it; `propflow deployments write --check` (and
tests/test_registry.py, so CI) fails when the committed file differs from what the registry
says. Written as text, not dumped, so the file stays readable and its comments stay.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from core.errors import PropflowError
from core.procedures import DUTIES, PROCEDURES, Duty, Procedure, Schedule

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"
WORK_POOL = "propflow"  # a process work pool (README "Scaling out")
WORK_QUEUE = "procedures"

HEADER = """\
# Generated from the procedure registry (core/procedures.py) by `propflow deployments write`:
# change it there; CI fails when this file and the registry differ.
# Deployments for a Prefect process work pool (scale-out, README "Scaling out"). For one
# machine, `propflow serve` runs the same flows itself and needs none of this.
# Apply with `python -m propflow.deploy` (`prefect deploy --all` fails on the pinned Prefect
# 3.8.8 + FastAPI 0.154). Each deployment is named after its flow, so runs are started as
# `<procedure>/<procedure>` whichever runs them. Runs suspend while they wait for people
# and the SLA clock in `propflow serve` resumes them. A schedule starts a procedure's own
# recurring duty (a run with no case), in the registry's time zone; an inspection plan of
# the policy is a deployment of its own, `inspection/<plan>`, on the plan's cron.
name: propflow
prefect-version: {prefect}

# On the worker, from the environment of each flow run: the checkout holding flows/.
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{{{ $PROPFLOW_CODE_DIR }}}}"

deployments:
"""

DEPLOYMENT = """\
  - name: {name}
    entrypoint: {entrypoint}
    description: {description}
    tags: [{tags}]
    work_pool:
      name: {pool}
      work_queue_name: {queue}
"""

SCHEDULE = """\
    schedules:
      - cron: "{cron}"
        timezone: {timezone}
"""

PARAMETERS = """\
    parameters:
{items}
"""


def _deployment(spec: Procedure) -> str:
    return DEPLOYMENT.format(
        name=spec.deployment_name, entrypoint=spec.flow,
        description=spec.description or f"{spec.zh} {spec.en} procedure",
        tags=", ".join(dict.fromkeys(("propflow", spec.name, *spec.tags))),
        pool=WORK_POOL, queue=WORK_QUEUE) + (SCHEDULE.format(
            cron=spec.schedule, timezone=spec.schedule_timezone) if spec.schedule else "")


def _further(spec: Procedure, schedule: Schedule) -> str:
    """A further scheduled deployment of the procedure's flow (an inspection plan)."""
    items = "\n".join(f"      {k}: {v}" for k, v in schedule.parameters.items())
    return DEPLOYMENT.format(
        name=schedule.name, entrypoint=spec.flow, description=schedule.description,
        tags=", ".join(dict.fromkeys(("propflow", spec.name, *spec.tags))),
        pool=WORK_POOL, queue=WORK_QUEUE) + PARAMETERS.format(items=items) + SCHEDULE.format(
            cron=schedule.cron, timezone=schedule.timezone)


def _duty(duty: Duty) -> str:
    """A scheduled duty that is no procedure (the monthly report), after the procedures."""
    return DEPLOYMENT.format(
        name=duty.name, entrypoint=duty.flow, description=duty.description,
        tags=", ".join(dict.fromkeys(("propflow", duty.name, *duty.tags))),
        pool=WORK_POOL, queue=WORK_QUEUE) + SCHEDULE.format(
            cron=duty.schedule, timezone=duty.schedule_timezone)


def render() -> str:
    """The whole file, one deployment per registered procedure, in the registry's order,
    each followed by its further scheduled ones (from the policy in effect: an inspection
    plan each, `inspection/<plan>`)."""
    from propflow.schedules import extra

    body = "\n".join([
        *("\n".join([_deployment(spec), *(_further(spec, s) for s in extra(spec))])
          for spec in PROCEDURES.values()),
        *(_duty(duty) for duty in DUTIES.values())])
    return HEADER.format(prefect=version("prefect")) + body


def write(path: Path = PREFECT_YAML) -> bool:
    """Write the file; True when it changed."""
    text = render()
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def check(path: Path = PREFECT_YAML) -> None:
    """Refuse a prefect.yaml that is not what the registry generates."""
    found = path.read_text(encoding="utf-8") if path.exists() else ""
    if found != render():
        raise PropflowError(f"prefect.yaml：{path} 与流程登记 (core/procedures.py) 不一致；"
                            "expected the file `propflow deployments write` generates",
                            field="prefect.yaml")
