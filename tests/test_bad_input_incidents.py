"""Bad input to complaints and emergencies: named field, what was expected, nothing changed."""

from __future__ import annotations

import pytest

from models import directory, steps
from models.db import unit_of_work
from propflow import actions as service
from tests.test_bad_input import decide, nothing_changes, refused

GOOD_REPORT = {"--kind": "gas_leak", "--community": "YGHY", "--location": "1号楼",
               "--reporter": "巡逻岗", "--buildings": "1"}
GOOD_COMPLAINT = {"--unit": "1-1-101", "--complainant": "业主张三", "--phone": "13800138000",
                  "--category": "environment", "--description": "垃圾没清"}


def command(name: list[str], good: dict[str, str], **changes: str) -> list[str]:
    fields = {**good, **{f"--{k.replace('_', '-')}": v for k, v in changes.items()}}
    return [*name, *[x for pair in fields.items() for x in pair]]


@pytest.mark.parametrize(("change", "field", "expected"), [
    ({"kind": "earthquake"}, "kind", ["'earthquake'", "expected one of", "gas_leak"]),
    ({"community": "NOPE"}, "community", ["'NOPE'", "expected one of", "YGHY"]),
    ({"buildings": "1,9"}, "buildings", ["'9'", "expected some of"]),
    ({"location": ""}, "location", ["不能为空", "expected where"]),
    ({"location": "  "}, "location", ["不能为空"]),
    ({"reporter": ""}, "reporter", ["不能为空"]),
], ids=["kind", "community", "building", "no-location", "blank-location", "reporter"])
def test_emergency_report_refuses_bad_field(demo, db, change, field, expected):
    with nothing_changes(db):
        refused(command(["emergency", "report"], GOOD_REPORT, **change), field, *expected)


@pytest.mark.parametrize(("change", "field", "expected"), [
    ({"category": "weather"}, "category", ["'weather'", "expected one of", "environment"]),
    ({"received_by": "9999"}, "received_by", ["9999", "expected a staff id"]),
    ({"unit": "9-9-999"}, "unit", ["'9-9-999'"]),
    ({"phone": "110"}, "phone", ["'110'", "expected 11 digits"]),
    ({"description": " "}, "description", ["不能为空"]),
    ({"repair": "BX-20990101-0001"}, "case", ["BX-20990101-0001"]),
], ids=["category", "staff", "unit", "phone", "description", "repair"])
def test_complaint_open_refuses_bad_field(demo, db, change, field, expected):
    with nothing_changes(db):
        refused(command(["complaint", "open"], GOOD_COMPLAINT, **change), field, *expected)


def test_only_the_duty_supervisor_or_above_activates(demo, db, clock):
    case = service.report_emergency(start_run=False, kind="fire", community="YGHY",
                                    location="地库", reporter="保安", buildings=["1"])
    with unit_of_work() as session:
        row = directory.case(session, case["number"])
        step = steps.open_step(session, case=row, key="activate#1", kind="activate",
                               role="cs_supervisor", now=clock.now())
    with nothing_changes(db):
        refused(decide(step.id, demo["by_role"]["technician"]), "as", "无权处理",
                "cs_supervisor")
        refused(decide(step.id, demo["by_role"]["csr"]), "as", "无权处理")


def test_only_the_first_responder_or_above_records_the_complainants_answer(demo, db, clock):
    case = service.open_complaint(start_run=False, unit="1-1-101", complainant="业主张三",
                                  phone="13800138000", category="environment",
                                  description="垃圾没清", received_by=demo["by_role"]["csr"])
    with unit_of_work() as session:
        row = directory.case(session, case["number"])
        step = steps.open_step(session, case=row, key="feedback#1", kind="feedback", role="csr",
                               assignee_id=demo["by_role"]["csr"], now=clock.now())
    other_csr = [p["id"] for p in demo["staff"] if p["role"] == "csr"][1]
    with nothing_changes(db):
        refused(decide(step.id, other_csr, "accepted=true"), "as", "无权处理",
                f"assignee staff {demo['by_role']['csr']}")
        refused(decide(step.id, demo["by_role"]["csr"], "accepted=false"), "reason",
                "required when accepted=false")
