"""The building report 楼宇综合情况表 (PROCEDURES.md §7: monthly, on the 28th, to the
supervisor for review): one run per community and month, named after its number; and, on
the deployment's schedule (the 28th at 09:00, core/procedures.py), a run with no case that
opens this month's case of each community.

The report is compiled from the month's rounds and put to the 客服主管; approved, it is
recorded; sent back with a note, the stewards correct the rounds' records and it is compiled
again. A lapse escalates along the policy's chain, as any step's.
"""

from __future__ import annotations

from prefect import flow

from core.vocabulary import Role
from flows.human import ask, rewinds
from tasks.building_report import compile_report, open_building_reports, record_approval
from tasks.cases import close_case, intake

SCHEDULED = "楼宇综合情况表"  # the name of the schedule's run: it has no case


@flow(name="building_report", flow_run_name="{number}", persist_result=True, log_prints=True)
@rewinds  # a step sent back or withdrawn: back through the procedure from the record
def building_report(case_id: int = 0, number: str = SCHEDULED) -> str:
    if not case_id:  # the 28th: this month's report of each community
        made = open_building_reports()
        return f"opened {len(made)}"
    intake(case_id)
    version = 0
    while True:
        version += 1
        report = compile_report(case_id, version)
        review = ask(case_id, f"approve#{version}", "approve", Role.CS_SUPERVISOR, None, {
            "duty": f"审批 {report['community']} {report['month']} 楼宇综合情况表（第 {version} "
                    f"版）：{report['summary']}；报表 {report['report']}",
            "report": report["report"]})
        if review.values.get("approved"):
            record_approval(case_id, version, review.decided_by)
            close_case(case_id, "approved")
            return "approved"
        # Sent back with a note: the stewards put the rounds' records right, then again.
        ask(case_id, f"revise#{version}", "revise", Role.STEWARD, None, {
            "duty": f"主管退回楼宇综合情况表：{review.text('reason')}；补正巡查记录后提交",
            "note": review.text("reason")})
