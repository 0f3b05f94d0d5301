"""The one human-step primitive: ask a role for a typed decision within a window.

The step is written first (who, due time, level), the assignee told, then the run waits.
Started from a deployment the run suspends (no process held, the body replays on resume);
started by hand it pauses in place. Either way the record in the database, not the resume
input, says what happened: a wake-up may mean a decision, a lapse to escalate, or nothing.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any, Literal, ParamSpec, TypeVar

from prefect import get_run_logger, pause_flow_run, suspend_flow_run
from prefect.context import FlowRunContext
from prefect.input import RunInput
from pydantic import Field, create_model

from core import labels
from core.settings import get_settings
from core.vocabulary import SETTLED
from flows.outcome import StepOutcome
from models.db import unit_of_work
from models.directory import step as load_step
from models.forms import FORMS
from models.notices import local
from tasks import replay
from tasks.steps import escalate, open_step, read_steps, record_ui_decision

# A paused run gives up after this; windows are enforced by our SLA clock, not by Prefect.
PAUSE_TIMEOUT = 365 * 24 * 3600


def _ui_form(kind: str) -> type[RunInput]:
    """The step's form for the Prefect UI: every field optional, so our own wake-up fits."""
    fields: dict[str, Any] = {
        # Several steps may wait at once (a fan-out): the form says which one it decides.
        "step_id": (int | None, Field(None, description="步骤编号 / step id")),
        "as_staff": (int | None, Field(None, description="您的员工编号 / your staff id")),
        "comment": (str | None, Field(None, description="说明 / comment")),
    }
    for name, info in FORMS[kind].model_fields.items():
        fields[name] = (info.annotation | None, Field(None, description=info.description))
    fields["signal"] = (str, Field("ui", description="保持 ui / leave as ui"))
    name = kind.replace(".", "_").title().replace("_", "")
    return create_model(f"{name}Input", __base__=RunInput, **fields)


UI_FORMS = {kind: _ui_form(kind) for kind in FORMS}


def _summary(step_id: int) -> str:
    """A short Markdown summary of the case above the form in the Prefect UI."""
    with unit_of_work() as session:
        step = load_step(session, step_id)
        case = step.case
        zh = "zh-CN"
        return (
            f"### {case.number} · {labels.step(case.procedure, step.kind, zh)}\n\n"
            f"- 报修人 {case.reporter_name}，{labels.label(labels.PRIORITIES, case.priority, zh)}"
            f"优先级，类别 {case.category}\n- 内容：{case.description}\n"
            f"- 处理角色：{labels.role(step.role, zh)}，时限 {local(step.due_at)}\n\n"
            "填写 `as_staff`（您的员工编号）及下列字段后提交；也可用 "
            f"`propflow steps decide {step.id} --as <id>`。"
        )


def _wait(step_id: int, kind: str, key: str) -> dict[str, Any]:
    form = UI_FORMS[kind].with_initial_data(description=_summary(step_id), step_id=step_id)
    context = FlowRunContext.get()
    if context and context.flow_run and context.flow_run.deployment_id:
        replay.before_suspend()
        answer = suspend_flow_run(wait_for_input=form, timeout=None, key=key)
    else:
        # Prefect annotates poll_interval as int, but only sleeps for it: a fraction of a
        # second (tests) works.
        answer = pause_flow_run(wait_for_input=form, timeout=PAUSE_TIMEOUT, key=key,  # type: ignore[call-overload]
                                poll_interval=get_settings().pause_poll_seconds)
    return answer.model_dump() if answer is not None else {}


class StepCancelled(RuntimeError):
    """A step the flow asked is cancelled: it has no answer to go on with."""


class Rewind(Exception):  # noqa: N818 - not an error: the procedure goes back a step
    """A step this run went past was sent back (驳回) or withdrawn (撤回): a step it waits on
    was cancelled as rewound (models.operations). The body runs again from the top
    (`rewinds`): every task is keyed, the record answers each step, and asking the step
    that was reopened waits for its new answer, so the run takes whatever path that gives."""


P = ParamSpec("P")
R = TypeVar("R")


def rewinds(body: Callable[P, R]) -> Callable[P, R]:
    """A flow body that goes back through the procedure when a step is sent back or
    withdrawn, instead of failing (then supervision would restart it from the record)."""

    @functools.wraps(body)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        while True:
            try:
                return body(*args, **kwargs)
            except Rewind as rewind:
                get_run_logger().info("步骤被驳回或撤回，按记录重走流程 (rewound: %s)", rewind)

    return run


def _settle_order(item: tuple[int, dict[str, Any]]) -> tuple[float, bool, int]:
    step_id, state = item
    # Within one instant (the training clock stands still) decisions go in the order they
    # were taken, and a step settled without one (cancelled, expired) after them: a cancel
    # is the consequence of a decision, never its cause.
    return (state["settled_at"] or 0.0, state["decision_id"] is None,
            state["decision_id"] or step_id)


def wait_for(step_ids: list[int], need: Literal["all", "any"] = "all") -> dict[int, StepOutcome]:
    """Wait until all (or any) of the steps are settled, escalating lapses meanwhile.

    Returns the outcome of each settled step, in the order the record settled them. A replay
    finds more settled than the first pass did (a resolve, then the update it cancelled): a
    body that acts on them in this order, and stops where it stopped before, takes the same
    path from the record. Only a decided outcome has values.
    """
    wakes = 0
    while True:
        # A read that found the wait over is final (a settled step stays settled): on replay
        # it comes from the run's journal. One that found it still waiting is read again.
        states = replay.call(read_steps, (step_ids,), {}, read_steps.live,
                             accept=lambda found: _over(found, step_ids, need))
        for state in states.values():
            for escalation_id, level in state["pending_escalations"]:
                escalate(escalation_id, level=level)
        rewound = [st["key"] for st in states.values() if st.get("rewound")]
        if rewound:
            raise Rewind(", ".join(rewound))
        done = {sid: StepOutcome.from_state(sid, st)
                for sid, st in sorted(states.items(), key=_settle_order)
                if st["status"] in SETTLED}
        if _over(states, step_ids, need):
            return done
        waiting = [sid for sid in step_ids if sid not in done]
        wakes += 1  # stable across replays: the same wait gets the same key
        answer = _wait(waiting[0], states[waiting[0]]["form"], key=f"{_set_key(step_ids)}-{wakes}")
        if answer.get("signal", "ui") == "ui":
            record_ui_decision(answer.get("step_id") or waiting[0], answer)


def _over(states: dict[int, dict[str, Any]], step_ids: list[int],
          need: Literal["all", "any"]) -> bool:
    settled = sum(1 for st in states.values() if st["status"] in SETTLED)
    return settled > 0 and (need == "any" or settled == len(step_ids))


def _set_key(step_ids: list[int]) -> str:
    """A pause key for this set of steps, the same on every replay."""
    if len(step_ids) == 1:
        return f"step-{step_ids[0]}"
    return "steps-" + hashlib.sha1(",".join(map(str, sorted(step_ids))).encode()).hexdigest()[:12]


def ask(case_id: int, key: str, kind: str, role: str,
        assignee_id: int | None = None, context: dict[str, Any] | None = None) -> StepOutcome:
    """One step: returns its outcome once decided or expired."""
    step_id = open_step(case_id, key, kind, role, assignee_id, context)
    outcome = wait_for([step_id])[step_id]
    if outcome.cancelled:
        raise StepCancelled(f"step {key} of case {case_id} was cancelled: nothing was decided")
    return outcome


def ask_all(case_id: int, asks: list[tuple[str, str, str]]) -> dict[str, StepOutcome]:
    """Several steps at once (a fan-out), answered in any order: outcomes by step key."""
    ids = {key: open_step(case_id, key, kind, role, None) for key, kind, role in asks}
    outcomes = wait_for(list(ids.values()), need="all")
    return {key: outcomes[step_id] for key, step_id in ids.items()}
