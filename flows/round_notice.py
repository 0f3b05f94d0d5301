"""Residents' notices before rounds (issue 10: pest control, "notice in every lobby two days
before"): a daily duty (core/procedures.py DUTIES) with no case, telling every household of
each community about a plan's firing on its notice day, once (models/round_notice.py)."""

from __future__ import annotations

from prefect import flow

from tasks.round_notice import announce


@flow(name="round_notice", flow_run_name="巡查住户通知", persist_result=True, log_prints=True)
def round_notice() -> str:
    told = announce()
    for item in told:
        print(f"{item['community']} {item['plan']} {item['day']}: {item['households']} 户")
    return f"announced {len(told)}"
