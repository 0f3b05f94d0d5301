"""The staff pages in process (FastAPI's TestClient): the inbox, the case page, the step page
with its generated form, decisions posted with CSRF, and a one-tap link's single step."""

from __future__ import annotations

import re

from sqlalchemy import select

from models.cases import Step
from models.db import unit_of_work
from propflow import actions
from tests.webpages import client_as, manager_scene, open_step, repair


def _rows(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'data-testid="step-row" data-step="(\d+)"', html)]


def _status(step_id: int) -> str:
    with unit_of_work() as session:
        return str(session.get(Step, step_id).status)


def test_the_inbox_lists_my_steps_escalated_first_with_due_time_and_countdown(demo, clock):
    scene = manager_scene(clock, demo)
    client, _ = client_as(scene["manager"])
    page = client.get("/")
    assert page.status_code == 200, page.text
    # Escalated (to the manager, level 2) first, then the manager's own approval; the
    # technician's step elsewhere is not theirs.
    assert _rows(page.text) == [scene["accept"], scene["approve"]]
    assert scene["other_case"] not in page.text
    assert "已升级" in page.text and "L2" in page.text
    assert page.text.count('data-testid="countdown"') == 2
    assert f'data-now="{clock.now().isoformat()}"' in page.text  # the server's clock
    assert "楼道灯不亮" in page.text and scene["accept_case"] in page.text
    assert 'src="/static/htmx.min.js"' in page.text and "https://" not in page.text

    english = client.get("/?lang=en")
    assert "My inbox" in english.text and "escalated" in english.text


def test_without_a_session_the_inbox_sends_to_sign_in(demo, clock):
    from fastapi.testclient import TestClient

    from propflow.web.app import create_app

    page = TestClient(create_app(), follow_redirects=False).get("/cases/BX-1")
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")


def test_the_step_form_marks_required_fields_and_a_conditional_reason(demo, clock):
    number = repair()
    csr = demo["by_role"]["csr"]
    step = open_step(clock, number, "owner_acceptance#1", "owner_acceptance", "owner")
    client, _ = client_as(csr)
    page = client.get(f"/steps/{step}")
    assert page.status_code == 200, page.text
    assert re.search(r'name="accepted" value="true"[^>]*required', page.text)
    assert "业主是否验收通过" in page.text and '<span class="req"' in page.text
    assert 'data-required-when="accepted=false"' in page.text
    assert "（“业主是否验收通过”选否时必填）" in page.text


def test_deciding_on_the_step_page_needs_csrf_and_a_reason_where_the_rule_wants_one(demo,
                                                                                    clock):
    number = repair()
    csr = demo["by_role"]["csr"]
    step = open_step(clock, number, "owner_acceptance#1", "owner_acceptance", "owner")
    client, csrf = client_as(csr)

    refused = client.post(f"/steps/{step}/decide", data={"accepted": "false"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert _status(step) == "waiting"

    no_reason = client.post(f"/steps/{step}/decide", data={"csrf": csrf, "accepted": "false"})
    assert no_reason.status_code == 422
    assert 'data-field="reason"' in no_reason.text and "必须填写原因" in no_reason.text
    assert _status(step) == "waiting"

    done = client.post(f"/steps/{step}/decide", data={
        "csrf": csrf, "accepted": "false", "reason": "墙面仍有水渍", "comment": "业主来电"})
    assert done.status_code == 303 and done.headers["location"].startswith(f"/steps/{step}?")
    assert _status(step) == "decided"
    shown = client.get(done.headers["location"])
    assert 'data-testid="result"' in shown.text and "墙面仍有水渍" in shown.text
    with unit_of_work() as session:
        decision = session.get(Step, step).decision
        assert decision.channel == "web" and decision.comment == "业主来电"
        assert decision.values == {"accepted": False, "reason": "墙面仍有水渍"}


def test_someone_the_rules_refuse_is_told_why_and_nothing_changes(demo, clock):
    scene = manager_scene(clock, demo)
    client, csrf = client_as(demo["by_role"]["csr"])
    page = client.post(f"/steps/{scene['other']}/decide", data={"csrf": csrf, "note": "x"})
    assert page.status_code == 403 and "无权处理" in page.text
    assert _status(scene["other"]) == "waiting"


def test_the_case_page_shows_summary_timeline_and_the_prefect_run(demo, clock):
    scene = manager_scene(clock, demo)
    client, _ = client_as(scene["manager"])
    page = client.get(f"/cases/{scene['approve_case']}")
    assert page.status_code == 200, page.text
    assert "垃圾三天没清" in page.text and "时间线" in page.text
    assert 'data-action="decided"' in page.text and "漏清" not in page.text.split("时间线")[0]
    assert "13900139000" not in page.text  # never a phone number
    assert f'sse-connect="/api/events?case={scene["approve_case"]}' in page.text
    live = client.get(f"/cases/{scene['approve_case']}/live")
    assert live.status_code == 200 and 'data-testid="timeline"' in live.text


def test_a_case_of_another_community_is_not_found(demo, clock):
    from tests.apikit import second_community

    number = repair()
    others = second_community()
    step = open_step(clock, number, "accept#1", "accept", "technician",
                     demo["by_role"]["technician"])
    client, csrf = client_as(others["project_manager"])
    assert client.get(f"/cases/{number}").status_code == 404
    assert client.get(f"/steps/{step}").status_code == 404
    assert client.post(f"/steps/{step}/decide", data={"csrf": csrf}).status_code == 404
    assert client.post(f"/steps/{step}/transfer",
                       data={"csrf": csrf, "to": "1"}).status_code == 404
    assert _status(step) == "waiting" and number not in client.get("/").text


def test_a_one_tap_link_opens_its_step_alone(demo, clock):
    scene = manager_scene(clock, demo)
    client, csrf = client_as(scene["manager"], step_id=scene["approve"])
    assert client.get("/").headers["location"] == f"/steps/{scene['approve']}"
    assert client.get(f"/steps/{scene['approve']}").status_code == 200
    assert client.get(f"/steps/{scene['accept']}").status_code == 403
    assert client.get(f"/cases/{scene['approve_case']}").status_code == 403
    done = client.post(f"/steps/{scene['approve']}/decide",
                       data={"csrf": csrf, "approved": "true", "comment": "同意补偿"})
    assert done.status_code == 303, done.text
    assert _status(scene["approve"]) == "decided"


def test_my_decision_leaves_my_inbox(demo, clock):
    scene = manager_scene(clock, demo)
    client, csrf = client_as(scene["manager"])
    client.post(f"/steps/{scene['accept']}/decide", data={"csrf": csrf, "note": "已督办"})
    assert _rows(client.get("/inbox/list").text) == [scene["approve"]]
    with unit_of_work() as session:
        assert session.scalars(select(Step.status).where(Step.id == scene["accept"])).one() \
            == "decided"
    assert actions.show_step(scene["accept"])["decision"]["channel"] == "web"


def test_every_registered_steps_form_becomes_a_page_form():
    """Whatever procedure is registered, its step forms render: every field an input of a
    known kind, the required ones marked, and posted strings the form model accepts."""
    from models.forms import FORMS
    from propflow.web import stepform

    for key, form in FORMS.items():
        procedure, kind = key.rsplit(".", 1)
        schema = form.model_json_schema()
        fields = stepform.fields({"form_schema": schema, "procedure": procedure, "step": kind})
        assert [f["name"] for f in fields] == list(form.model_fields), key
        assert {f["name"] for f in fields if f["required"]} == set(schema.get("required", []))
        assert {f["kind"] for f in fields} <= {"bool", "int", "money", "datetime", "text"}
        assert stepform.values(fields, {f["name"]: "" for f in fields}) == {}
