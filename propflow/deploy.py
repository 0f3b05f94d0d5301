"""Create (or update) the deployments of prefect.yaml on the Prefect server at
PREFECT_API_URL, for a work pool's workers to run: `python -m propflow.deploy [prefect.yaml]`.

It does what `prefect deploy --all` does for this file. That command cannot be used here:
with Prefect 3.8.8 and FastAPI 0.154 (the versions pinned), after creating the first
deployment it asks the server for the pool's online workers with `"limit": null`, which the
server refuses (422), and it stops with a traceback before the other deployments.
The pull steps are stored as written: `{{ $PROPFLOW_CODE_DIR }}` is filled in on the worker,
from the environment of each flow run it starts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"


def apply(path: Path = PREFECT_YAML) -> list[str]:
    """Every deployment of the file, created or updated in place; their full names."""
    from prefect.client.orchestration import get_client
    from prefect.flows import Flow, load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    config: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    names = []
    with get_client(sync_client=True) as client:
        for spec in config["deployments"]:
            file, _, function = spec["entrypoint"].partition(":")
            flow: Flow[..., Any] = load_flow_from_entrypoint(f"{path.parent / file}:{function}")
            pool = spec.get("work_pool") or {}
            client.create_deployment(
                flow_id=client.create_flow_from_name(flow.name),
                name=spec["name"],
                entrypoint=spec["entrypoint"],
                description=spec.get("description"),
                tags=spec.get("tags") or [],
                work_pool_name=pool.get("name"),
                work_queue_name=pool.get("work_queue_name"),
                job_variables=pool.get("job_variables") or {},
                pull_steps=spec.get("pull", config.get("pull")) or [],
                parameter_openapi_schema=parameter_schema(flow).model_dump_for_openapi(),
                enforce_parameter_schema=True,
                concurrency_limit=spec.get("concurrency_limit"),
                schedules=_schedules(spec),
                parameters=spec.get("parameters") or {},  # an inspection plan's key
            )
            names.append(f"{flow.name}/{spec['name']}")
    return names


def _schedules(spec: dict[str, Any]) -> list[Any]:
    """A deployment's cron schedules, each in its own time zone (Asia/Shanghai)."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule

    return [DeploymentScheduleCreate(schedule=CronSchedule(cron=item["cron"],
                                                           timezone=item.get("timezone")))
            for item in spec.get("schedules") or []]


def main() -> None:
    from core import prefect_env

    prefect_env.configure()  # before Prefect is imported: it reads its settings once
    for name in apply(Path(sys.argv[1]) if len(sys.argv) > 1 else PREFECT_YAML):
        print(f"deployed {name}")


if __name__ == "__main__":
    main()
