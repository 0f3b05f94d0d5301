"""Each approval operation once from the step page (a form posted with CSRF), carried out by
propflow.actions: claim/unclaim, 转办, 委派, 加签, 抄送, 驳回, 撤回."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from models.cases import Step
from models.db import unit_of_work
from models.outbox import AuditEvent
from propflow import actions
from tests.webpages import client_as, complaint, manager_scene, open_step


def _step(step_id: int) -> Step:
    with unit_of_work() as session:
        step = session.get(Step, step_id)
        session.expunge(step)
        return step


def _audited(action: str) -> list[dict[str, Any]]:
    with unit_of_work() as session:
        return [a.detail for a in session.scalars(
            select(AuditEvent).where(AuditEvent.action == action))]


def _post(staff_id: int, step_id: int, operation: str, **form: str) -> Any:
    client, csrf = client_as(staff_id)
    return client.post(f"/steps/{step_id}/{operation}", data={"csrf": csrf, **form})


def test_claim_and_unclaim_a_step_of_my_role(demo, clock):
    scene = manager_scene(clock, demo)
    manager = scene["manager"]
    client, _ = client_as(manager)
    page = client.get(f"/steps/{scene['approve']}").text
    assert 'data-testid="op-claim"' in page and 'data-testid="op-unclaim"' not in page

    done = _post(manager, scene["approve"], "claim")
    assert done.status_code == 303 and "done=claim" in done.headers["location"]
    assert _step(scene["approve"]).assignee_id == manager
    shown = client.get(done.headers["location"]).text
    assert "已完成：认领" in shown and 'data-testid="op-unclaim"' in shown

    assert _post(manager, scene["approve"], "unclaim").status_code == 303
    assert _step(scene["approve"]).assignee_id is None


def test_transfer_to_a_colleague_picked_from_the_list(demo, clock):
    scene = manager_scene(clock, demo)
    tech, other_tech = demo["by_role"]["technician"], None
    client, _ = client_as(tech)
    page = client.get(f"/steps/{scene['other']}").text
    assert 'data-testid="op-transfer"' in page and "郑浩" in page  # the colleague picker
    other_tech = next(p["id"] for p in demo["staff"] if p["name"] == "郑浩")

    no_one = _post(tech, scene["other"], "transfer", to="", reason="")
    assert no_one.status_code == 422 and "请选择同事" in no_one.text
    done = _post(tech, scene["other"], "transfer", to=str(other_tech), reason="我今天休假")
    assert done.status_code == 303, done.text
    assert _step(scene["other"]).assignee_id == other_tech
    assert _audited("transferred")[0]["reason"] == "我今天休假"
    timeline = client_as(tech)[0].get(f"/cases/{scene['other_case']}").text
    assert "转办" in timeline and "→ 郑浩" in timeline


def test_delegate_add_a_signer_and_copy(demo, clock):
    scene = manager_scene(clock, demo)
    manager, supervisor = scene["manager"], demo["by_role"]["cs_supervisor"]
    director, csr = demo["by_role"]["cs_director"], demo["by_role"]["csr"]

    assert _post(manager, scene["approve"], "delegate", to=str(supervisor),
                 reason="请先核实").status_code == 303
    assert [r["id"] for r in actions.steps_as(supervisor, "mine")].count(scene["approve"]) == 1
    # The delegate answers on the same page; the final word stays with the manager.
    answered = _post(supervisor, scene["approve"], "decide", approved="true")
    assert answered.status_code == 303 and "delivery=signed" in answered.headers["location"]
    shown = client_as(supervisor)[0].get(answered.headers["location"]).text
    assert "已签署" in shown and _step(scene["approve"]).status == "waiting"
    assert _post(manager, scene["approve"], "add_signer", to=str(director), position="after",
                 reason="金额较大").status_code == 303
    assert _audited("signer_added")[0]["position"] == "after"
    assert _post(manager, scene["approve"], "cc", to=str(csr)).status_code == 303
    assert _audited("copied")[0]["to"] == [csr]


def test_send_back_needs_a_reason_and_reopens_the_previous_step(demo, clock):
    scene = manager_scene(clock, demo)
    manager = scene["manager"]
    refused = _post(manager, scene["approve"], "send_back", reason="")
    assert refused.status_code == 422 and 'data-field="reason"' in refused.text
    assert _step(scene["approve"]).status == "waiting"

    done = _post(manager, scene["approve"], "send_back", reason="调查不充分")
    assert done.status_code == 303, done.text
    assert _step(scene["approve"]).status == "cancelled"
    sent = _audited("sent_back")[0]
    assert sent["to_step"] == "investigate#1" and sent["reason"] == "调查不充分"


def test_withdraw_my_decision_while_the_next_step_is_untouched(demo, clock):
    number = complaint(unit="1-1-301")
    cleaner = demo["by_role"]["cleaning"]
    investigate = open_step(clock, number, "investigate#1", "investigate", "cleaning")
    actions.decide(investigate, cleaner, {"findings": "漏清", "proposed_resolution": "补扫"})
    open_step(clock, number, "resolve#1", "resolve", "cleaning")  # as the run goes on

    client, _ = client_as(cleaner)
    assert 'data-testid="op-withdraw"' in client.get(f"/steps/{investigate}").text
    done = _post(cleaner, investigate, "withdraw", reason="写错了")
    assert done.status_code == 303, done.text
    reopened = int(done.headers["location"].split("/steps/")[1].split("?")[0])
    assert reopened != investigate and _step(reopened).status == "waiting"
    assert _step(reopened).assignee_id == cleaner
    page = client.get(done.headers["location"]).text
    assert "已完成：撤回" in page and 'data-testid="decide-form"' in page


def test_an_operation_of_someone_the_rules_refuse_changes_nothing(demo, clock):
    scene = manager_scene(clock, demo)
    csr = demo["by_role"]["csr"]
    refused = _post(csr, scene["approve"], "claim")
    assert refused.status_code == 403 and 'data-testid="error"' in refused.text
    assert _step(scene["approve"]).assignee_id is None
    client, _ = client_as(csr)
    forged = client.post(f"/steps/{scene['approve']}/claim", data={"csrf": "forged"})
    assert forged.status_code == 403 and "CSRF" in forged.text
