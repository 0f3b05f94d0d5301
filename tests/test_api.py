"""The JSON API as an integration uses it with a bearer token: open a repair, find it, decide
its first step; lists filtered and paged; the step views; notifications read; errors as
problem+json naming the field; owners' phones never shown; a new procedure gets its route."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from core.procedures import PROCEDURES, register
from models.cases import Case, Decision
from models.db import unit_of_work
from models.outbox import AuditEvent, Notification
from propflow import sla
from propflow.web import api
from tests.apikit import app_client, bearer, first_step, no_prefect, open_repair  # noqa: F401
from tests.flowkit import COMPLAINT, REPAIR

PHONE = "13800138000"
PROBLEM = "application/problem+json"


@pytest.fixture
def client():  # type: ignore[no-untyped-def]
    with app_client() as c:
        yield c


def staff(demo: dict[str, Any], name: str) -> int:
    return next(p["id"] for p in demo["staff"] if p["name"] == name)


@pytest.mark.usefixtures("no_prefect")
def test_open_a_repair_find_it_and_decide_its_first_step(demo, client):
    csr, wu = staff(demo, "王芳"), staff(demo, "吴刚")
    opened = client.post("/api/cases/repair", json=REPAIR | {"unit": "1-2-301"},
                         headers=bearer(csr))
    assert opened.status_code == 201, opened.text
    number = opened.json()["number"]
    assert number.startswith("BX-") and opened.json()["flow_run_id"] is None
    assert "Prefect 暂不可达" in opened.json()["note"]  # kept; the SLA clock starts the run

    listed = client.get("/api/cases", headers=bearer(csr)).json()
    assert [c["number"] for c in listed["items"]] == [number] and listed["total"] == 1
    shown = client.get(f"/api/cases/{number}", headers=bearer(csr)).json()
    # The one who received it is its first responder, on the timeline.
    assert shown["timeline"][0]["action"] == "case_opened"
    assert shown["timeline"][0]["actor"] == f"staff:{csr}"

    step = first_step(number)  # 楼道灯 (public_area): auto-dispatched to 吴刚 (electrical)
    tech = bearer(wu)
    assert [s["id"] for s in client.get("/api/steps?view=mine", headers=tech).json()] == [step]
    form = client.get(f"/api/steps/{step}", headers=tech).json()
    assert form["step"] == "accept" and form["assignee"] == wu
    assert set(form["form_schema"]["properties"]) == {"eta", "note", "reassign_to"}
    assert {p["id"]: p["rule"] for p in form["may_decide"]}[wu] == "assignee"

    # Another technician of the community may not: 403 naming the rule.
    other = client.post(f"/api/steps/{step}/decision", json={"values": {"note": "我来"}},
                        headers=bearer(staff(demo, "郑浩")))
    assert other.status_code == 403 and other.headers["content-type"] == PROBLEM
    assert "规则（assignee）" in other.json()["detail"]

    decided = client.post(f"/api/steps/{step}/decision",
                          json={"values": {"note": "马上到"}, "comment": "收到"}, headers=tech)
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert body["decided_by"] == wu and body["values"]["note"] == "马上到"
    # No run to wake yet (Prefect was away): stored, and queued with the reason.
    assert body["delivery"] == "queued" and not body["delivered"] and body["reason"]
    with unit_of_work() as session:
        decision = session.scalars(select(Decision)).one()
        assert (decision.channel, decision.comment) == ("api", "收到")

    again = client.post(f"/api/steps/{step}/decision", json={"values": {}}, headers=tech)
    assert again.status_code == 409 and again.json()["field"] == "step"
    shown = client.get(f"/api/cases/{number}", headers=tech).json()
    assert shown["steps"][0]["decision"]["channel"] == "api"
    assert client.get("/api/steps?view=mine", headers=tech).json() == []


def test_approval_operations_are_offered_on_each_step(demo, client):
    he, wu, zheng = staff(demo, "何军"), staff(demo, "吴刚"), staff(demo, "郑浩")
    dispatch = first_step(open_repair(unit="3-1-101", category="equipment",
                                      description="电梯异响"))  # the 技术主管's, unassigned
    claimed = client.post(f"/api/steps/{dispatch}/claim", headers=bearer(he))
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["assignee"] == he
    assert client.get(f"/api/steps/{dispatch}", headers=bearer(he)).json()["assignee"] == he
    back = client.post(f"/api/steps/{dispatch}/unclaim", headers=bearer(he))
    assert back.status_code == 200 and back.json()["assignee"] is None

    accept = first_step(open_repair(unit="1-2-301"))  # 吴刚's
    missing = client.post(f"/api/steps/{accept}/transfer", json={"reason": "请假"},
                          headers=bearer(wu))
    assert missing.status_code == 422 and missing.json()["field"] == "to"
    moved = client.post(f"/api/steps/{accept}/transfer", json={"to": zheng, "reason": "请假"},
                        headers=bearer(wu))
    assert moved.status_code == 200, moved.text
    assert moved.json()["assignee"] == zheng
    assert [s["id"] for s in client.get("/api/steps", headers=bearer(zheng)).json()] == [accept]
    refused = client.post(f"/api/steps/{accept}/send_back", json={"reason": ""},
                          headers=bearer(zheng))
    assert refused.status_code == 422 and refused.json()["field"] == "reason"

    chen = staff(demo, "陈静")
    assert client.get("/api/steps?view=copied", headers=bearer(chen)).json() == []
    copied = client.post(f"/api/steps/{accept}/cc", json={"to": [chen], "reason": "请关注"},
                         headers=bearer(zheng))
    assert copied.status_code == 200, copied.text
    watched = client.get("/api/steps?view=copied", headers=bearer(chen)).json()
    assert [s["id"] for s in watched] == [accept]


def test_a_case_links_to_its_prefect_run(demo, client, env):
    env("PREFECT_UI_URL", "http://prefect.example:4200")
    number = open_repair()
    with unit_of_work() as session:
        session.scalars(select(Case)).one().flow_run_id = "0b7c6a52-8c1e-4f53-9b1a-3f0e8d1c2a44"
    shown = client.get(f"/api/cases/{number}", headers=bearer(staff(demo, "陈静"))).json()
    assert shown["flow_run_id"] == "0b7c6a52-8c1e-4f53-9b1a-3f0e8d1c2a44"
    assert shown["prefect_url"] == ("http://prefect.example:4200/runs/flow-run/"
                                    "0b7c6a52-8c1e-4f53-9b1a-3f0e8d1c2a44")


def test_cases_are_filtered_and_paged(demo, client, clock):
    repairs = [open_repair(unit=u) for u in ("1-1-101", "1-1-102", "2-1-101")]
    from propflow import actions

    complaint = actions.open_complaint(start_run=False, **COMPLAINT)["number"]
    late = first_step(repairs[0])
    clock.advance(timedelta(hours=2))  # past accept's 30 working minutes
    first_step(repairs[1])  # opened now: not late
    headers = bearer(staff(demo, "陈静"))

    def numbers(query: str) -> list[str]:
        answer = client.get(f"/api/cases?{query}", headers=headers)
        assert answer.status_code == 200, answer.text
        return [c["number"] for c in answer.json()["items"]]

    assert numbers("") == [complaint, *reversed(repairs)]  # newest first
    assert numbers("procedure=complaint") == [complaint]
    assert numbers("procedure=repair&community=YGHY") == list(reversed(repairs))
    assert numbers("overdue=true") == [repairs[0]]
    assert numbers(f"q={repairs[1][-4:]}") == [repairs[1]]
    assert numbers("status=closed") == []
    page = client.get("/api/cases?limit=2&offset=1", headers=headers).json()
    assert [c["number"] for c in page["items"]] == [repairs[2], repairs[1]]
    assert (page["total"], page["limit"], page["offset"]) == (4, 2, 1)
    assert late

    bad = client.get("/api/cases?procedure=move_out", headers=headers)
    assert bad.status_code == 422 and bad.json()["field"] == "procedure"
    assert "expected one of" in bad.json()["detail"]
    bad = client.get("/api/cases?limit=0", headers=headers)
    assert bad.status_code == 422 and bad.json()["field"] == "limit"


def test_step_views_mine_role_overdue_and_escalated(demo, client, clock):
    wu, chen, he = staff(demo, "吴刚"), staff(demo, "陈静"), staff(demo, "何军")
    late = first_step(open_repair(unit="1-2-301"))  # accept for 吴刚, due 09:30
    clock.advance(timedelta(minutes=31))
    assert sla.tick(start_pending=False).lapsed == 1  # escalated to the 客服主管
    dispatch = first_step(open_repair(unit="3-1-101", category="equipment",
                                      description="电梯异响"))  # complex: the 技术主管's

    def ids(who: int, view: str) -> list[int]:
        answer = client.get(f"/api/steps?view={view}", headers=bearer(who))
        assert answer.status_code == 200, answer.text
        return [s["id"] for s in answer.json()]

    assert ids(wu, "mine") == [late]
    assert ids(chen, "mine") == [late]  # escalated to her level
    assert ids(chen, "escalated") == [late] and ids(wu, "escalated") == []
    assert ids(he, "role") == [dispatch] and ids(he, "mine") == [dispatch]
    # An escalated step waits under the role it reached, no longer the technicians'.
    assert ids(chen, "role") == [late] and ids(wu, "role") == []
    assert ids(chen, "overdue") == [late] == ids(wu, "overdue")
    bad = client.get("/api/steps?view=all", headers=bearer(wu))
    assert bad.status_code == 422 and bad.json()["field"] == "view"


def test_my_notifications_and_marking_one_read(demo, client):
    wu = staff(demo, "吴刚")
    first_step(open_repair(unit="1-2-301"))  # 吴刚 is told of his new step
    mine = client.get("/api/notifications", headers=bearer(wu)).json()
    assert mine and {n["recipient"] for n in mine} == {f"staff:{wu}"}
    assert all(n["read_at"] == "" for n in mine)
    first = mine[0]["id"]

    read = client.post(f"/api/notifications/{first}/read", headers=bearer(wu))
    assert read.status_code == 200 and read.json()["read_at"]
    again = client.post(f"/api/notifications/{first}/read", headers=bearer(wu)).json()
    assert again["read_at"] == read.json()["read_at"]  # the first reading is kept
    unread = client.get("/api/notifications?unread=true", headers=bearer(wu)).json()
    assert first not in [n["id"] for n in unread]

    # Someone else's notification is not theirs to read (or to know of).
    other = client.post(f"/api/notifications/{first}/read", headers=bearer(staff(demo, "郑浩")))
    assert other.status_code == 404 and other.json()["field"] == "notification"
    assert client.get("/api/notifications", headers=bearer(staff(demo, "郑浩"))).json() == []


def test_refusals_are_problem_json_naming_the_field(demo, client):
    headers = bearer(staff(demo, "王芳"))
    cases = [
        (REPAIR | {"phone": "12345"}, "phone", "expected 11 digits"),
        ({k: v for k, v in REPAIR.items() if k != "reporter"}, "reporter", "缺少"),
        (REPAIR | {"colour": "red"}, "colour", "不是该流程的字段"),
        (REPAIR | {"category": "gold"}, "category", "expected one of"),
        (REPAIR | {"unit": "9-9-999"}, "unit", "expected 楼栋-单元-房号"),
    ]
    for body, field, expected in cases:
        answer = client.post("/api/cases/repair", json=body, headers=headers)
        assert answer.status_code in (404, 422), (field, answer.text)
        assert answer.headers["content-type"] == PROBLEM
        assert answer.json()["field"] == field and expected in answer.json()["detail"], field
    answer = client.post("/api/cases/repair", content=b"{not json", headers=headers)
    assert answer.status_code == 422 and answer.json()["field"] == "body"
    answer = client.post("/api/cases/repair", json=[REPAIR], headers=headers)
    assert answer.status_code == 422 and answer.json()["field"] == "body"

    step = first_step(open_repair())
    wu = bearer(staff(demo, "吴刚"))
    answer = client.post(f"/api/steps/{step}/decision", json={"values": {"eta": "soon"}},
                         headers=wu)
    assert answer.status_code == 422 and answer.json()["field"] == "eta"
    answer = client.post(f"/api/steps/{step}/decision", json={"value": {}}, headers=wu)
    assert answer.status_code == 422 and answer.json()["field"] == "value"
    answer = client.get("/api/steps/999999", headers=wu)
    assert answer.status_code == 404 and answer.json()["field"] == "step"
    # Past what an id column holds (PostgreSQL would refuse to even compare it).
    answer = client.get(f"/api/steps/{2**31}", headers=wu)
    assert answer.status_code == 422 and answer.json()["field"] == "id"
    with unit_of_work() as session:  # nothing of it was recorded
        assert len(session.scalars(select(Case)).all()) == 1
        assert session.scalars(select(Decision)).all() == []


def test_an_owners_phone_never_leaves_the_api(demo, client):
    number = open_repair(phone=PHONE, description=f"楼道灯不亮，回电 {PHONE}")
    step = first_step(number)
    with unit_of_work() as session:  # a failed delivery whose error names the number
        told = session.scalars(select(Notification).where(
            Notification.recipient == f"owner:{PHONE}")).one()
        told.last_error = f"SMS gateway refused {PHONE}"
    headers = bearer(staff(demo, "陈静"))
    shown = client.get(f"/api/cases/{number}", headers=headers)
    assert "138****8000" in shown.text
    for path in ("/api/cases", f"/api/cases/{number}", f"/api/steps/{step}",
                 "/api/steps?view=overdue", "/api/notifications"):
        answer = client.get(path, headers=headers)
        assert answer.status_code == 200 and PHONE not in answer.text, path
    with unit_of_work() as session:  # the record keeps it: the flow calls the owner back
        assert session.scalars(select(Case)).one().reporter_phone == PHONE
        assert session.scalars(select(AuditEvent)).first() is not None


def test_a_newly_registered_procedure_gets_its_own_route():
    from tests.registry_example import MOVE_IN

    register(MOVE_IN)
    try:
        routes = {(r.path, m) for r in api.build_router().routes for m in r.methods}
        schema = next(r for r in api.build_router().routes if r.path == "/api/cases/move_in")
    finally:
        PROCEDURES.pop(MOVE_IN.name)
    assert ("/api/cases/move_in", "POST") in routes
    body = schema.openapi_extra["requestBody"]["content"]["application/json"]["schema"]
    assert body["title"] == "MoveInIntake" and "resident" in body["required"]
    assert ("/api/cases/move_in", "POST") not in {
        (r.path, m) for r in api.build_router().routes for m in r.methods}
