"""Move-in 入住 (PROCEDURES.md §4, §10): intake refusals, ID numbers encrypted and masked, the
joint inspection's defects as linked repairs, re-inspection and sign-off, custody; in
process and on the served service. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text
from typer.testing import CliRunner

from core.errors import PropflowError
from models.cases import Case
from models.db import unit_of_work
from models.forms import validate_form
from models.intake import example
from models.movein import fee_due
from models.outbox import Notification
from propflow import actions, sla
from propflow.cli import app
from tests.flowkit import CaseRun, ExistingRun, until

OWNER_ID = "110101199003071233"  # valid check digit (GB 11643)
AGENT_ID = "110105198506124561"
runner = CliRunner()


class MoveInRun(CaseRun):
    procedure = "movein"


def refused(fields: dict[str, Any]) -> PropflowError:
    with pytest.raises(PropflowError) as caught:
        actions.open_case("movein", example("movein") | fields, start_run=False)
    return caught.value


# --- intake ---------------------------------------------------------------------------------

def test_intake_refusals_name_the_field_and_never_repeat_the_id_number(demo):
    agent = {"buyer": "agent", "agent": "王五", "agent_id_number": AGENT_ID}
    cases = [
        ({"buyer": "agent"}, "agent"),  # an agent's purchase without --agent
        ({"buyer": "agent", "agent": "王五"}, "agent_id_number"),
        (agent | {"agent_id_number": "110105198506124562"}, "agent_id_number"),  # check digit
        ({"buyer": "company"}, "company"),
        ({"company": "某某公司"}, "company"),  # only for --buyer company
        ({"buyer": "friend"}, "buyer"),
        ({"id_number": "110101199003071234"}, "id_number"),  # check digit
        ({"id_number": "11010119900307123"}, "id_number"),  # 17 characters
        ({"id_number": "110101199013071235"}, "id_number"),  # month 13
        ({"phone": "12345"}, "phone"),
    ]
    for fields, field in cases:
        error = refused(fields)
        assert error.field == field, (fields, error.message)
        assert "1101011990030712" not in error.message and "11010519850612" not in error.message
    assert "代理人" in refused({"buyer": "agent"}).message
    assert actions.list_cases() == []  # nothing was written

    # The CLI: exit 2, the field on stderr, the number nowhere.
    bad = "110101199003071234"
    done = runner.invoke(app, ["movein", "open", "--unit", "1-1-101", "--owner", "张三",
                               "--phone", "13800138000", "--buyer", "owner",
                               "--id-number", bad])
    assert done.exit_code == 2, done.output
    assert "id_number" in done.stderr and bad not in done.output + done.stderr


def test_id_numbers_are_encrypted_at_rest_and_masked_in_cases_show(demo, env, monkeypatch):
    from tasks import runs

    monkeypatch.setattr(runs, "start", lambda *args: None)  # Prefect away: the case is kept
    key = Fernet.generate_key().decode()
    env("PROPFLOW_ID_KEY", key)
    done = runner.invoke(app, ["movein", "open", "--unit", "1-1-102", "--owner", "李四",
                               "--phone", "13900139000", "--buyer", "agent", "--agent", "王五",
                               "--agent-id-number", AGENT_ID, "--id-number", OWNER_ID,
                               "--custody", "--json"])
    assert done.exit_code == 0, done.output
    number = json.loads(done.stdout)["number"]

    with unit_of_work() as session:
        rows = session.execute(text(
            "select person, cipher, masked from identity_numbers order by id")).all()
        raw = json.dumps([list(r) for r in session.execute(text(
            "select * from audit_events")).all()], default=str, ensure_ascii=False)
        raw += json.dumps([list(r) for r in session.execute(text(
            "select * from cases")).all()], default=str, ensure_ascii=False)
        raw += json.dumps([list(r) for r in session.execute(text(
            "select * from notifications")).all()], default=str, ensure_ascii=False)
    assert [r[0] for r in rows] == ["owner", "agent"]
    for (_, cipher, masked), clear in zip(rows, [OWNER_ID, AGENT_ID], strict=True):
        assert clear not in cipher and clear[6:14] not in cipher
        assert Fernet(key.encode()).decrypt(cipher.encode()).decode() == clear  # the env's key
        assert masked == clear[:6] + "********" + clear[-4:]
    assert OWNER_ID not in raw and AGENT_ID not in raw

    shown = runner.invoke(app, ["cases", "show", number])
    assert shown.exit_code == 0, shown.output
    assert "owner_id_number: 110101********1233" in shown.stdout
    assert "agent_id_number: 110105********4561" in shown.stdout
    as_json = runner.invoke(app, ["cases", "show", number, "--json"]).stdout
    assert OWNER_ID not in shown.stdout + as_json and AGENT_ID not in shown.stdout + as_json
    assert json.loads(as_json)["details"]["custody"] is True

    # Another key cannot read them, and says which setting is wrong.
    from models import identity

    env("PROPFLOW_ID_KEY", Fernet.generate_key().decode())
    with pytest.raises(PropflowError) as caught:
        identity.decrypt(rows[0][1])
    assert caught.value.field == "PROPFLOW_ID_KEY" and OWNER_ID not in caught.value.message


def test_fees_at_the_policy_rates_and_custody_at_seventy_percent(demo):
    # demo policy: property 2.5 + public energy 0.3 yuan/m²/month, 3 months in advance.
    plain = fee_due(Decimal("100"), custody=False)
    assert plain["items"] == {"property": "750.00", "public_energy": "90.00"}
    assert plain["total"] == "840.00"
    assert fee_due(Decimal("100"), custody=True)["total"] == "588.00"


def test_inspection_form_reads_defects_per_room_of_the_policy_checklist(demo):
    values = validate_form("movein.inspection", {
        "rooms": "客厅,bathroom", "water": "0", "electricity": "1.5", "gas": "0",
        "defects": "卫生间：地漏堵塞; living_room:墙面开裂"})
    assert values["rooms"] == ["living_room", "bathroom"]
    assert values["defects"] == [{"room": "bathroom", "item": "地漏堵塞"},
                                 {"room": "living_room", "item": "墙面开裂"}]
    for defects, hint in (("车库:漏水", "车库"), ("地漏堵塞", "房间:缺陷"),
                          ("kitchen:烟道不通", "rooms")):
        with pytest.raises(PropflowError) as caught:
            validate_form("movein.inspection", {"rooms": "客厅,bathroom", "water": "0",
                                                "electricity": "0", "gas": "0",
                                                "defects": defects})
        assert caught.value.field.startswith("defects") and hint in caught.value.message


def test_policy_refuses_a_defect_category_repairs_do_not_have(policy_with):
    import yaml

    from core.policy import load_policy
    from core.settings import DEMO_POLICY

    procedures = yaml.safe_load(DEMO_POLICY.read_text(encoding="utf-8"))["procedures"]
    movein = procedures["movein"] | {"defect_category": "garden"}
    with pytest.raises(PropflowError) as caught:
        load_policy(policy_with(procedures=procedures | {"movein": movein}))
    assert caught.value.field == "procedures.movein.defect_category"
    assert "in_unit" in caught.value.message
    movein = procedures["movein"] | {"documents": {"owner": ["id_card", "deed"], "agent": [],
                                                   "company": []}}
    with pytest.raises(PropflowError) as caught:
        load_policy(policy_with(procedures=procedures | {"movein": movein}))
    assert caught.value.field == "procedures.movein.documents.owner[1]"


def test_a_defect_repair_is_free_and_under_warranty_goes_to_the_warranty_centre(demo):
    from models import repair as repair_rules

    owner = example("movein")
    movein = actions.open_case("movein", owner, start_run=False)["number"]
    picked = {}
    for unit in ("3-1-101", "1-1-101"):  # building 3 under warranty, building 1 not
        opened = actions.open_repair(start_run=False, unit=unit, category="in_unit",
                                     priority="medium", reporter="业主张三", phone="13800138000",
                                     description="入住验收缺陷：地漏堵塞", defect_of=movein)
        assert opened["paid"] is False  # in_unit is chargeable, but not a move-in defect
        with unit_of_work() as session:
            case = session.scalars(select(Case).where(Case.number == opened["number"])).one()
            picked[unit] = repair_rules.choose_technician(session, case)
    assert picked["3-1-101"] == demo["by_role"]["developer_warranty"]
    technicians = {p["id"] for p in demo["staff"] if p["role"] == "technician"}
    assert picked["1-1-101"] in technicians
    links = actions.show_case(movein)["links"]
    assert [lk["relation"] for lk in links] == ["defect", "defect"]

    not_a_movein = actions.open_repair(start_run=False, **example("repair"))["number"]
    with pytest.raises(PropflowError) as caught:
        actions.open_repair(start_run=False, **example("repair") | {"defect_of": not_a_movein})
    assert caught.value.field == "defect_of"


# --- the flow in process ---------------------------------------------------------------------

SIGNED = ("registration,decoration_application,service_agreement,decoration_agreement,"
          "temporary_rules,documents_receipt")


def through_handover(run: MoveInRun, custody: bool = False) -> None:
    run.decide("documents#1", "csr", documents="id_card,move_in_notice,purchase_contract",
               area="88.5")
    run.decide("agreements#1", "csr",
               signed=SIGNED + (",custody_agreement" if custody else ""))
    run.decide("fees#1", "csr", paid=True, receipt="SJ-0001")
    run.decide("handover#1", "csr", keys=3, items="keys,handbook,diagrams", receipt_signed=True)


@pytest.mark.usefixtures("prefect_api")
def test_two_defects_open_two_linked_repairs_then_reinspection_and_sign_off(demo, clock):
    # Building 3 is under warranty: its defects go to the developer's warranty centre.
    run = MoveInRun(demo, clock, unit="3-1-101")
    # A missing purchase contract is asked for again.
    run.decide("documents#1", "csr", documents="id_card,move_in_notice", area="88.5")
    step = run.step("documents#2")
    assert step["role"] == "csr"
    assert "上次缺 购房合同" in actions.show_step(step["id"])["duty"]
    run.decide("documents#2", "csr", documents="id_card,move_in_notice,purchase_contract",
               area="88.5")
    run.decide("agreements#1", "csr", signed=SIGNED)
    assert "合计 743.40 元" in actions.show_step(run.step("fees#1")["id"])["duty"]
    run.decide("fees#1", "csr", paid=True, receipt="SJ-0001")
    run.decide("handover#1", "csr", keys=3, items="keys,handbook,diagrams", receipt_signed=True)
    shown = actions.show_step(run.step("inspection#1")["id"])
    assert "卫生间（bathroom）：防水、地漏" in shown["duty"]
    run.decide("inspection#1", "technician", rooms="living_room,bedroom,kitchen,bathroom",
               water="0.5", electricity="3", gas="0",
               defects="卫生间:地漏堵塞; 客厅:墙面开裂")

    rectification = run.step("rectification#1")
    case = run.show()
    repairs = case["details"]["defect_repairs"]
    assert len(repairs) == 2
    assert sorted(lk["case"] for lk in case["links"] if lk["relation"] == "defect") == \
        sorted(repairs)
    centre = demo["by_role"]["developer_warranty"]
    linked = [ExistingRun(demo, clock, n) for n in repairs]
    for repair in linked:
        shown_repair = repair.show()
        assert shown_repair["paid"] is False  # a move-in defect is never the owner's to pay
        assert {"relation": "defect (from)", "case": run.number} in shown_repair["links"]
        assert repair.step("accept#1")["assignee"] == centre
        repair.decide("accept#1", centre)
        repair.decide("complete#1", centre, diagnosis="保修整改", work_done="已修复")
        repair.decide("owner_acceptance#1", "csr", accepted=True)
    # One repair closed: the move-in still waits for the other.
    linked[0].decide("callback#1", "csr", rating=5)
    assert linked[0].finish() == "done"
    assert actions.show_step(rectification["id"])["status"] == "waiting"
    linked[1].decide("callback#1", "csr", rating=4)
    assert linked[1].finish() == "done"
    settled = actions.show_step(rectification["id"])
    assert settled["status"] == "decided" and settled["decision"]["channel"] == "system"

    sla.tick(start_pending=False)  # the SLA clock hands the run what the record says
    run.decide("reinspection#1", "tech_supervisor", passed=True, finding="整改合格")
    run.decide("sign_off#1", "csr", accepted=True)  # the owner signs, recorded by the desk
    assert run.finish() == "moved_in"
    case = run.show()
    assert case["status"] == "closed" and case["outcome"] == "moved_in"
    keys = [s["key"] for s in case["steps"]]
    assert keys.index("rectification#1") < keys.index("reinspection#1") < keys.index("sign_off#1")
    to_owner = [n["event"] for n in case["notifications"] if n["recipient"].startswith("owner:")]
    for event in ("received", "handed_over", "defects", "reinspection", "closed"):
        assert event in to_owner, event


@pytest.mark.usefixtures("prefect_api")
def test_custody_readings_above_the_limits_alert_the_cs_supervisor(demo, clock):
    run = MoveInRun(demo, clock, unit="1-1-102", custody=True)
    through_handover(run, custody=True)
    assert run.show()["details"]["fee"]["total"] == "520.39"  # 88.5 m² × 2.8 × 3 × 70 %
    run.decide("inspection#1", "technician", rooms="living_room,bathroom", water="0",
               electricity="0", gas="0")
    run.decide("sign_off#1", "csr", accepted=True)
    run.decide("custody_start#1", "steward", water="8", electricity="10")  # water above 5
    run.decide("custody_check#1", "steward", exterior_ok=True, water="3", electricity="12")
    run.decide("custody_check#2", "steward", occasion="after_rain", exterior_ok=False,
               issues="阳台积水", water="4", electricity="25")  # electricity above 20
    # A weekly check nobody makes escalates like any step.
    run.lapse("custody_check#3")
    run.handled("custody_check#3", 1)
    assert run.escalations("custody_check#3")[0]["to_role"] == "cs_supervisor"
    run.decide("custody_end#1", "csr", note="业主收房")
    assert run.finish() == "moved_in"

    case = run.show()
    supervisor = demo["by_role"]["cs_supervisor"]
    alerts = [n for n in case["notifications"] if n["event"] == "custody_alert"]
    assert {n["recipient"] for n in alerts} == {f"staff:{supervisor}"}
    assert len(alerts) == 2
    with unit_of_work() as session:
        bodies = list(session.scalars(select(Notification.body).where(
            Notification.event == "custody_alert").order_by(Notification.id)))
    assert "水表 8 > 5" in bodies[0] and "电表 25 > 20" in bodies[1]
    high = [t["detail"] for t in case["timeline"] if t["action"] == "custody_reading_high"]
    assert [d["over"] for d in high] == [{"water": "8 > 5"}, {"electricity": "25 > 20"}]
    steps = {s["key"]: s["status"] for s in case["steps"]}
    assert steps["custody_check#3"] == "cancelled" and "custody_check#4" not in steps


# --- served: suspend and replay ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_served_move_in_with_a_defect_repair_reaches_closed(service, demo):
    from tests.test_served_procedures import closed, decide

    service.start()
    who = demo["by_role"]
    number = actions.open_movein(unit="1-2-201", owner="赵六", phone="13700137000",
                                 buyer="company", company="某某科技有限公司",
                                 id_number=OWNER_ID)["number"]
    decide(number, "documents#1", who["csr"], area="120",
           documents="id_card,move_in_notice,purchase_contract,company_certificate")
    decide(number, "agreements#1", who["csr"], signed=SIGNED)
    decide(number, "fees#1", who["csr"], paid=False, reason="业主未带银行卡")
    decide(number, "fees#2", who["csr"], paid=True, receipt="SJ-0002")
    decide(number, "handover#1", who["csr"], keys=2, items="keys,handbook,diagrams",
           receipt_signed=True)
    decide(number, "inspection#1", who["technician"], rooms="kitchen,bathroom", water="1",
           electricity="2", gas="0.1", defects="厨房:烟道不通")

    # The repair is started from its deployment by the service and run to closed there.
    repair = until("the defect repair", lambda: (actions.show_case(number)["details"]
                                                 .get("defect_repairs") or [None])[0])
    technician = until("its technician", lambda: next(
        (s["assignee"] for s in actions.show_case(repair)["steps"] if s["key"] == "accept#1"),
        None))
    decide(repair, "accept#1", technician)
    decide(repair, "complete#1", technician, diagnosis="烟道堵塞", work_done="疏通")
    decide(repair, "owner_acceptance#1", who["csr"], accepted=True)
    decide(repair, "callback#1", who["csr"], rating=5)
    closed(repair, "done")

    # The last repair closed settles the wait; the SLA clock wakes the suspended move-in.
    decide(number, "reinspection#1", who["tech_supervisor"], passed=True)
    decide(number, "sign_off#1", who["csr"], accepted=True)
    case = closed(number, "moved_in")
    assert case["details"]["owner_id_number"] == "110101********1233"
    assert [s["status"] for s in case["steps"] if s["key"] == "rectification#1"] == ["decided"]
    assert OWNER_ID not in service.log.read_text(errors="replace")
