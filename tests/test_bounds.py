"""Issue 6, finding 5: bounds on money and text, and one error handler for every command.
Bad input exits 2 naming the field and what was expected; our own fault exits 1 with a
reference into the log. Never a traceback, never a phone number."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from core.settings import reset_settings
from models import directory, limits, steps
from models.db import unit_of_work
from propflow import actions as service
from propflow.cli import app
from tests.test_bad_input import nothing_changes, ok, refused

runner = CliRunner()
PHONE = "13912345678"
ROOT = Path(__file__).resolve().parents[1]


def repair_open(**changes: str) -> list[str]:
    fields = {"--unit": "1-1-101", "--category": "water_electric", "--priority": "medium",
              "--reporter": "业主李四", "--phone": PHONE, "--description": "卫生间灯不亮",
              **{f"--{k}": v for k, v in changes.items()}}
    return ["repair", "open", *[x for pair in fields.items() for x in pair]]


def complaint_open(**changes: str) -> list[str]:
    fields = {"--unit": "1-1-101", "--complainant": "业主李四", "--phone": PHONE,
              "--category": "environment", "--description": "垃圾三天没清",
              **{f"--{k}": v for k, v in changes.items()}}
    return ["complaint", "open", *[x for pair in fields.items() for x in pair]]


def emergency_report(**changes: str) -> list[str]:
    fields = {"--kind": "fire", "--community": "YGHY", "--location": "2号楼地下车库",
              "--reporter": "巡逻岗", **{f"--{k}": v for k, v in changes.items()}}
    return ["emergency", "report", *[x for pair in fields.items() for x in pair]]


def decide(step: int, staff: int, *sets: str) -> list[str]:
    return ["steps", "decide", str(step), "--as", str(staff),
            *[x for s in sets for x in ("--set", s)]]


def no_phone(*outputs: str) -> None:
    for out in outputs:
        assert PHONE not in out, out
        assert "Traceback" not in out, out


@pytest.fixture
def waiting(demo: dict, clock) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A repair waiting on `complete` and a complaint waiting on `investigate` (no runs)."""
    by_role = demo["by_role"]
    repair = service.open_repair(start_run=False, unit="1-1-101", category="water_electric",
                                 priority="medium", reporter="业主李四", phone=PHONE,
                                 description="厨房水龙头滴水")
    complaint = service.open_complaint(start_run=False, unit="1-1-101", complainant="业主李四",
                                       phone=PHONE, category="environment",
                                       description="垃圾三天没清", received_by=by_role["csr"])
    with unit_of_work() as session:
        complete = steps.open_step(
            session, case=directory.case(session, repair["number"]), key="complete#1",
            kind="complete", role="technician", assignee_id=by_role["technician"],
            now=clock.now())
        investigate = steps.open_step(
            session, case=directory.case(session, complaint["number"]), key="investigate#1",
            kind="investigate", role="cleaning", assignee_id=by_role["cleaning"],
            now=clock.now())
    return {"complete": complete.id, "investigate": investigate.id, "by_role": by_role}


# --- money -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("charge", "expected"), [
    ("1e400", "超过上限 100000 元"),
    ("100000.01", "超过上限 100000 元"),
    ("inf", "finite"),
    ("nan", "finite"),
    ("-1", "不能为负"),
    ("1.234", "最多两位小数"),
], ids=["1e400", "over-max", "inf", "nan", "negative", "fractions-of-a-cent"])
def test_charge_out_of_bounds_is_refused(waiting, db, charge, expected):
    with nothing_changes(db):
        refused(decide(waiting["complete"], waiting["by_role"]["technician"], "diagnosis=灯管坏",
                       f"charge={charge}"), "charge", expected)


def test_charge_at_the_maximum_reads_as_a_plain_number(waiting):
    done = ok(decide(waiting["complete"], waiting["by_role"]["technician"], "diagnosis=灯管坏",
                     "charge=1e5"))
    assert done["values"]["charge"] == "100000"  # not 1E+5, as the owner would read it


def test_compensation_maximum_comes_from_the_policy(waiting, db, policy_with):
    policy_with(limits={"money_max": 500})
    with nothing_changes(db):
        refused(decide(waiting["investigate"], waiting["by_role"]["cleaning"], "findings=属实",
                       "proposed_resolution=补偿", "compensation=500.01"),
                "compensation", "超过上限 500 元", "limits.money_max")
    done = ok(decide(waiting["investigate"], waiting["by_role"]["cleaning"], "findings=属实",
                     "proposed_resolution=补偿", "compensation=500"))
    assert done["values"]["compensation"] == "500"


# --- text --------------------------------------------------------------------------------------

# Each one a character too long; the phone hidden in the text must not be echoed either.
@pytest.mark.parametrize(("command", "field", "limit"), [
    (repair_open(reporter="张" * 150), "reporter", limits.NAME),
    (repair_open(description=(PHONE * 200)[:limits.DESCRIPTION + 1]), "description",
     limits.DESCRIPTION),
    (complaint_open(complainant="张" * (limits.NAME + 1)), "complainant", limits.NAME),
    (complaint_open(description="脏" * (limits.DESCRIPTION + 1)), "description",
     limits.DESCRIPTION),
    (emergency_report(location="库" * (limits.LOCATION + 1)), "location", limits.LOCATION),
    (emergency_report(reporter="岗" * (limits.NAME + 1)), "reporter", limits.NAME),
], ids=["repair-reporter-150", "repair-description", "complainant", "complaint-description",
        "emergency-location", "emergency-reporter"])
def test_too_long_intake_text_is_refused_on_both_databases(demo, db, command, field, limit):
    with nothing_changes(db):
        refused(command, field, f"at most {limit} characters")
        result = runner.invoke(app, command)
    no_phone(result.stdout, result.stderr)


def test_intake_text_at_its_limit_is_stored_whole(demo, db):
    name = "张" * limits.NAME
    case = service.open_repair(start_run=False, unit="1-1-101", category="water_electric",
                               priority="medium", reporter=name, phone=PHONE,
                               description="灯" * limits.DESCRIPTION)
    shown = service.show_case(case["number"])
    assert shown["reporter"] == name
    assert len(shown["description"]) == limits.DESCRIPTION


def test_too_long_form_text_is_refused_without_echoing_it(waiting, db):
    with nothing_changes(db):
        refused(decide(waiting["complete"], waiting["by_role"]["technician"],
                       f"diagnosis=业主{PHONE}说" + "坏" * limits.NOTE),
                "diagnosis", f"最多 {limits.NOTE} 字")
        result = runner.invoke(app, decide(waiting["complete"], waiting["by_role"]["technician"],
                                           f"diagnosis={PHONE}" + "坏" * limits.NOTE))
        no_phone(result.stdout, result.stderr)
        refused([*decide(waiting["complete"], waiting["by_role"]["technician"], "diagnosis=坏"),
                 "--comment", "说" * (limits.NOTE + 1)], "comment", f"at most {limits.NOTE}")


# --- names that do not exist -------------------------------------------------------------------

@pytest.mark.parametrize("command", [repair_open(community="NOPE"),
                                     complaint_open(community="NOPE"),
                                     emergency_report(community="NOPE")],
                         ids=["repair", "complaint", "emergency"])
def test_unknown_community_is_named_not_the_unit(demo, db, command):
    with nothing_changes(db):
        refused(command, "community", "'NOPE'", "expected one of ['YGHY']")


def test_steps_list_refuses_an_unknown_role(demo, db):
    refused(["steps", "list", "--role", "nonsense"], "role", "'nonsense'", "expected one of",
            "cs_supervisor", "owner")
    assert ok(["steps", "list", "--role", "owner"]) == []


def test_an_id_too_large_for_the_database_is_not_found(demo, db):
    refused(["steps", "decide", "9" * 20, "--as", "1"], "step", "expected a step id")
    refused(["cases", "show", "9" * 20], "case", "expected a number")


# --- environment -------------------------------------------------------------------------------

def test_unknown_mode_names_the_variable_and_the_choices(demo, db, env):
    env("PROPFLOW_MODE", "bogus")
    refused(["clock", "show"], "PROPFLOW_MODE", "'bogus'", "expected one of",
            "'normal'", "'training'")


def test_unknown_mode_from_a_real_shell_shows_no_traceback(tmp_path):
    environ = {**os.environ, "PROPFLOW_MODE": "bogus", "PROPFLOW_HOME": str(tmp_path)}
    environ.pop("PROPFLOW_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "propflow.cli", "clock", "show"], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("错误：PROPFLOW_MODE"), done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize("url", ["notaurl", "mysql://root:s3cret@db.example.com/propflow",
                                 "postgresql+psycopg2://root:s3cret@127.0.0.1/propflow"],
                         ids=["not-a-url", "mysql", "psycopg2-not-shipped"])
def test_database_url_we_cannot_use(env, url):
    env("PROPFLOW_DATABASE_URL", url)
    refused(["cases", "list"], "PROPFLOW_DATABASE_URL", "expected sqlite:///",
            "postgresql+psycopg://")
    assert "s3cret" not in runner.invoke(app, ["cases", "list"]).stderr


def test_plain_postgresql_url_is_understood(env):
    env("PROPFLOW_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    refused(["cases", "list"], "PROPFLOW_DATABASE_URL", "无法连接数据库")  # tried, not refused


def test_clock_advance_is_bounded(demo, db, env):
    env("PROPFLOW_MODE", "training")
    before = ok(["clock", "show"])["utc"]
    with nothing_changes(db):
        refused(["clock", "advance", "1000000000d"], "delta", "3650")
        refused(["clock", "advance", "3651d"], "delta", "at most 3650d")
    assert ok(["clock", "show"])["utc"] == before
    assert ok(["clock", "advance", "3650d"])["now"]


# --- our own faults ----------------------------------------------------------------------------

def test_internal_fault_gives_a_reference_and_logs_the_traceback_masked(
        demo, db, monkeypatch, tmp_path):
    monkeypatch.setenv("PROPFLOW_HOME", str(tmp_path))
    reset_settings()

    def broken() -> list[dict[str, Any]]:
        raise RuntimeError(f"row for 业主 {PHONE}, 身份证 11010519491231002X")

    monkeypatch.setattr(service, "list_cases", broken)
    result = runner.invoke(app, ["cases", "list"])
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit)  # handled, not escaped
    no_phone(result.stdout, result.stderr)
    assert "11010519491231002X" not in result.stderr
    found = re.search(r"参考编号 ([0-9A-F]{8})", result.stderr)
    assert found, result.stderr
    reference = found.group(1)

    log = (tmp_path / "logs" / "propflow.log").read_text(encoding="utf-8")
    entry = log[log.index(reference):]
    assert "Traceback (most recent call last)" in entry
    assert "RuntimeError" in entry
    assert "139****5678" in entry
    assert PHONE not in log and "11010519491231002X" not in log

    as_json = runner.invoke(app, ["cases", "list", "--json"])
    assert as_json.exit_code == 1
    error = json.loads(as_json.stderr)
    assert error["error"] == "internal"
    assert error["reference"] in (tmp_path / "logs" / "propflow.log").read_text(encoding="utf-8")
