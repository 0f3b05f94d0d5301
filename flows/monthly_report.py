"""The monthly report 月度报表 (issue 10): on the 1st of each month (core/procedures.py
DUTIES), last month's report of each community is written and its project manager told.
A run of no case: it asks nobody and waits for nothing."""

from __future__ import annotations

from prefect import flow

from tasks.report import produce_monthly_reports


@flow(name="monthly_report", flow_run_name="月度报表", persist_result=True, log_prints=True)
def monthly_report(month: str = "") -> str:
    """`month` YYYY-MM; empty (the schedule's run): the month before this one."""
    made = produce_monthly_reports(month)
    for item in made:
        print(f"{item['community']} {item['month']}: {item['html']}, {item['xlsx']}")
    return f"reported {len(made)}"
