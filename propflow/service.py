"""`propflow serve`: every deployment, the SLA clock and outbox delivery in one process.

Several replicas may run; the SLA clock and delivery claim their work atomically.
"""

from __future__ import annotations

import gc
import logging
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from core.policy import get_policy
from core.procedures import DUTIES, PROCEDURES
from core.settings import get_settings

log = logging.getLogger("propflow.service")


def _safely(fn, name: str):  # type: ignore[no-untyped-def]
    def run() -> None:
        try:
            fn()
        except Exception:  # a failed pass is retried at the next one
            log.exception("%s pass failed", name)

    return run


def case_flows() -> list:  # type: ignore[type-arg]
    """Every registered procedure's flow (core/procedures.py), imported only to serve it."""
    from flows import flow_for

    return [flow_for(name) for name in PROCEDURES]


def deployments() -> list:  # type: ignore[type-arg]
    from prefect.schedules import Cron

    from flows import flow_for
    from propflow.schedules import extra

    made = []
    for p in PROCEDURES.values():
        made.append(flow_for(p.name).to_deployment(
            name=p.deployment_name, tags=["propflow", p.name, *p.tags],
            schedule=Cron(p.schedule, timezone=p.schedule_timezone) if p.schedule else None))
        # The policy's further schedules of the flow (an inspection plan each), own parameters.
        made += [flow_for(p.name).to_deployment(
            name=s.name, tags=["propflow", p.name, *p.tags], parameters=s.parameters,
            description=s.description, schedule=Cron(s.cron, timezone=s.timezone))
            for s in extra(p)]
    return made + duty_deployments()


def duty_flows() -> list:  # type: ignore[type-arg]
    """The scheduled duties' flows (core/procedures.py DUTIES: the monthly report)."""
    from flows import duty_flow

    return [duty_flow(name) for name in DUTIES]


def duty_deployments() -> list:  # type: ignore[type-arg]
    from prefect.schedules import Cron

    from flows import duty_flow

    return [duty_flow(d.name).to_deployment(
        name=d.name, tags=["propflow", d.name, *d.tags], description=d.description,
        schedule=Cron(d.schedule, timezone=d.schedule_timezone)) for d in DUTIES.values()]


def run() -> None:
    from prefect import serve

    from notifications.delivery import deliver_due
    from propflow import sla

    settings = get_settings()
    get_policy()  # refuse to start on a malformed policy file
    from propflow.web import server as web_server

    web = web_server.start()  # a port in use stops serve here, before anything has started
    executor = None
    if settings.serve_runs and settings.executor == "threads":
        from propflow.executor import Executor

        executor = Executor(deployments(), case_flows() + duty_flows(), settings.run_threads,
                            settings.run_poll_seconds, settings.run_heartbeat_seconds)
        executor.register()

    def tick() -> None:
        try:
            sla.tick()
        finally:
            if executor:  # runs it woke or started: take them now, not at the next poll
                executor.poke()

    # What serve loaded to run (Prefect, the flows, the web door) stays loaded: frozen, the
    # collector no longer walks it at every full collection (an SLA pass of 10,000 warnings
    # spent a quarter of its time in the collector before).
    gc.freeze()
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(_safely(tick, "sla"), "interval",
                      seconds=settings.sla_interval_seconds, max_instances=1, coalesce=True)
    scheduler.add_job(_safely(deliver_due, "delivery"), "interval",
                      seconds=settings.outbox_interval_seconds, max_instances=1, coalesce=True)
    from propflow.schedules import ensure_next_runs, scheduled

    if scheduled():
        # Prefect's own scheduler cannot insert them on this stack (propflow/schedules.py).
        scheduler.add_job(_safely(ensure_next_runs, "schedules"), "interval", seconds=60,
                          max_instances=1, coalesce=True, next_run_time=datetime.now(UTC))
    scheduler.start()
    log.info("SLA clock every %ss, delivery every %ss", settings.sla_interval_seconds,
             settings.outbox_interval_seconds)
    try:
        if not settings.serve_runs:
            _keep_time_only()
        elif executor:
            _stop_on_sigterm(executor)
            executor.serve_forever()
        else:
            serve(*deployments(), limit=50)
    finally:
        if executor:
            executor.stop()
        scheduler.shutdown(wait=False)
        if web:
            web.stop()


def _stop_on_sigterm(executor) -> None:  # type: ignore[no-untyped-def]
    """A polite stop takes no new run and lets those executing reach their next wait."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: executor.stop())


def _keep_time_only() -> None:
    """PROPFLOW_SERVE_RUNS=false: the case runs belong to a work pool's workers, started
    from the deployments of prefect.yaml. Serving deployments of the same names here would
    overwrite them and take their runs away from the pool, so none is created."""
    import threading

    print("propflow serve：只运行时限时钟、运行监督和通知投递，流程由工作池的 worker 运行 "
          "(SLA clock, supervision and delivery only; a work pool's workers run the cases)",
          flush=True)
    threading.Event().wait()
