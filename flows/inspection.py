"""Inspection rounds 巡查 (PROCEDURES.md §7): one run per round, named after its number; and,
on each plan's own scheduled deployment (inspection/<plan>, prefect.yaml), a run with no case
that makes that fire time's rounds.

A round asks each checkpoint's checklist at once, all due at the round's end; one not done
by then escalates to the 客服主管. Each finding is acted on as its checkpoint is answered: a
broken facility opens a linked repair, a gas smell an emergency, a shop failing fire safety
gets a rectification notice and a follow-up, a vacant unit's defect goes to the developer's
warranty centre and is rechecked next month.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow

from flows.human import rewinds, wait_for
from tasks.cases import close_case, intake
from tasks.inspection import act_on_finding, follow_up_result, plan_rounds
from tasks.steps import open_step

SCHEDULED = "巡查计划"  # the name of a plan's scheduled run: it has no case


@flow(name="inspection", flow_run_name="{number}", persist_result=True, log_prints=True)
@rewinds  # a step sent back or withdrawn: back through the procedure from the record
def inspection(case_id: int = 0, number: str = SCHEDULED, plan: str = "") -> str:
    if not case_id:  # a plan's schedule: this fire time's rounds, in every community
        made = plan_rounds(plan)
        return f"planned {len(made)}"
    round_ = intake(case_id)
    role, assignee = round_["role"], round_["assignee"]
    ends = datetime.fromisoformat(round_["ends_at"])

    # Every checkpoint at once, signed in and checked in any order by the round's end.
    pending = [open_step(case_id, f"checkpoint#{cp['key']}", "checkpoint", role, assignee,
                         {"duty": _duty(cp, round_)}, ends)
               for cp in round_["checkpoints"]]
    while pending:
        for step_id, outcome in wait_for(pending, need="any").items():
            pending.remove(step_id)
            if not outcome.decided:
                continue
            if outcome.key.startswith("follow_up#"):
                follow_up_result(case_id, outcome.key, outcome.flag("rectified"),
                                 outcome.text("note"))
                continue
            done = act_on_finding(case_id, outcome.key, dict(outcome.values),
                                  outcome.decided_by)
            if done.get("follow_up"):  # a shop's rectification, checked by its deadline
                checkpoint = outcome.key.split("#", 1)[1]
                pending.append(open_step(
                    case_id, f"follow_up#{checkpoint}", "follow_up", role, assignee,
                    {"duty": f"复查整改通知书 {done['notice']}（商铺 {done['shop']}）"},
                    datetime.fromisoformat(done["follow_up"])))

    close_case(case_id, "done")
    return "done"


def _duty(checkpoint: dict, round_: dict) -> str:  # type: ignore[type-arg]
    """What the steward sees on the step: the checklist, and last month's defects to recheck."""
    duty = f"{checkpoint['label']}：{'、'.join(checkpoint['items'])}；逐项检查，不合格项填 not_ok"
    if round_.get("storm_label"):  # ordered for a storm (models/storm.py)
        duty = f"{round_['storm_label']}检查 {duty}"
    rechecks = round_.get("rechecks") or []
    if rechecks:
        duty += "；重点复查上月缺陷：" + "；".join(
            f"{m['unit']} {m['defect']}（{m['found_in']}）" for m in rechecks)
    return duty
