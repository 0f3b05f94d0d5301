"""Issue requirement 9: bad input gets a clear error naming the field and what was expected,
and changes nothing. Every case goes through the real CLI, in plain text and with --json."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from core import clock as clock_module
from core.procedures import PROCEDURES
from core.settings import DEMO_POLICY
from models import directory, steps
from models.db import all_tables, get_engine, unit_of_work
from propflow import actions as service
from propflow.cli import app

runner = CliRunner()


# --- helpers -----------------------------------------------------------------------------------

def table_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order: equal before and after means untouched."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with get_engine(url).connect() as conn:
        for table in all_tables():
            rows = conn.execute(select(table).order_by(*table.primary_key.columns)).all()
            out[table.name] = [tuple(r) for r in rows]
    return out


def row_counts(url: str) -> dict[str, int]:
    with get_engine(url).connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in all_tables()}


def refused(args: list[str], field: str, *expected: str) -> dict[str, Any]:
    """Run the command twice (text, --json): both exit 2, name the field and what was expected,
    print nothing on stdout and no traceback. Returns the JSON error."""
    text = runner.invoke(app, args)
    assert text.exit_code == 2, (text.stdout, text.stderr, text.exception)
    assert isinstance(text.exception, SystemExit)
    assert text.stdout == ""
    assert "Traceback" not in text.output
    assert text.stderr.startswith("错误："), text.stderr
    assert field in text.stderr, text.stderr
    for part in expected:
        assert part in text.stderr, (part, text.stderr)

    as_json = runner.invoke(app, [*args, "--json"])
    assert as_json.exit_code == 2, (as_json.stdout, as_json.stderr, as_json.exception)
    assert as_json.stdout == ""
    error = json.loads(as_json.stderr)
    assert isinstance(error, dict)
    assert error["field"] == field
    assert error["message"] == text.stderr.removeprefix("错误：").rstrip("\n")
    return error


def ok(args: list[str]) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout)


@contextmanager
def nothing_changes(url: str) -> Iterator[None]:
    """Row counts of every table, and every row, are the same after the block as before."""
    counts, rows = row_counts(url), table_rows(url)
    yield
    assert row_counts(url) == counts
    assert table_rows(url) == rows


@pytest.fixture
def work(demo: dict, clock: clock_module.ManualClock) -> dict[str, Any]:
    """A medium repair in 1-1-101 with its steps opened directly (no Prefect run)."""
    by_role = demo["by_role"]
    case = service.open_repair(
        start_run=False, unit="1-1-101", category="water_electric", priority="medium",
        reporter="业主张三", phone="13800138000", description="厨房水龙头滴水",
    )
    ids: dict[str, int] = {}
    with unit_of_work() as session:
        row = directory.case(session, case["number"])
        for kind, role, assignee in (
            ("accept", "technician", by_role["technician"]),
            ("complete", "technician", by_role["technician"]),
            ("owner_acceptance", "owner", None),
            ("callback", "owner", None),
        ):
            step = steps.open_step(session, case=row, key=f"{kind}#1", kind=kind, role=role,
                                   assignee_id=assignee, now=clock.now())
            ids[kind] = step.id
    return {"case": case["number"], "steps": ids, "by_role": by_role}


# --- repair open -------------------------------------------------------------------------------

GOOD = {"--unit": "1-1-101", "--category": "water_electric", "--priority": "medium",
        "--reporter": "业主张三", "--phone": "13800138000", "--description": "卫生间灯不亮",
        "--channel": "phone"}


def repair_open(**changes: str) -> list[str]:
    fields = {**GOOD, **{f"--{k}": v for k, v in changes.items()}}
    return ["repair", "open", *[x for pair in fields.items() for x in pair]]


@pytest.mark.parametrize(("change", "field", "expected"), [
    ({"unit": "9-9-999"}, "unit", ["'9-9-999'", "expected 楼栋-单元-房号"]),
    ({"category": "roof"}, "category", ["'roof'", "expected one of", "water_electric"]),
    ({"priority": "urgent"}, "priority", ["'urgent'", "expected one of", "'high'"]),
    ({"phone": "12345"}, "phone", ["'12345'", "expected 11 digits starting with 1"]),
    ({"phone": "021-12345678"}, "phone", ["'021-12345678'", "expected 11 digits"]),
    ({"description": ""}, "description", ["不能为空", "expected what is broken"]),
    ({"description": "   "}, "description", ["不能为空", "expected what is broken"]),
    ({"channel": "fax"}, "channel", ["'fax'", "expected one of", "front_desk"]),
], ids=["unit", "category", "priority", "phone-short", "phone-landline", "description-empty",
        "description-blank", "channel"])
def test_repair_open_refuses_bad_field(demo, db, change, field, expected):
    with nothing_changes(db):
        refused(repair_open(**change), field, *expected)


# --- steps decide ------------------------------------------------------------------------------

def decide(step: int | str, staff: int | str, *sets: str) -> list[str]:
    return ["steps", "decide", str(step), "--as", str(staff),
            *[x for s in sets for x in ("--set", s)]]


def test_unknown_step_id(work, db):
    with nothing_changes(db):
        refused(decide(9999, work["by_role"]["technician"]), "step", "9999",
                "expected a step id")
        refused(decide("abc", work["by_role"]["technician"]), "step", "'abc'")


def test_unknown_staff_id(work, db):
    with nothing_changes(db):
        refused(decide(work["steps"]["accept"], 9999), "as", "9999", "expected a staff id")


def test_cleaning_staff_may_not_accept_a_repair(work, db):
    with nothing_changes(db):
        error = refused(decide(work["steps"]["accept"], work["by_role"]["cleaning"]), "as",
                        "无权处理", "expected assignee staff", "technician")
    assert error["error"] == "forbidden"


def test_technician_may_not_answer_the_owners_callback(work, db):
    with nothing_changes(db):
        refused(decide(work["steps"]["callback"], work["by_role"]["technician"], "rating=5"),
                "as", "无权处理", "expected a role among", "csr")


def test_a_step_is_decided_once(work, db):
    accept = work["steps"]["accept"]
    before = row_counts(db)
    first = ok(decide(accept, work["by_role"]["technician"], "note=马上到"))
    assert first["delivered"] is False  # no run to wake here; the SLA clock retries later
    assert first["values"]["note"] == "马上到"
    after = row_counts(db)  # the control: a good decision does change the record
    assert after["decisions"] == before["decisions"] + 1
    assert after["audit_events"] == before["audit_events"] + 1

    with nothing_changes(db):
        error = refused(decide(accept, work["by_role"]["tech_supervisor"], "note=我来"),
                        "step", "只能决定一次", "expected a waiting step")
    assert error["error"] == "conflict"


def test_complete_without_diagnosis(work, db):
    with nothing_changes(db):
        refused(decide(work["steps"]["complete"], work["by_role"]["technician"],
                       "work_done=换阀门"),
                "diagnosis", "Field required", "expected fields diagnosis, work_done?")


@pytest.mark.parametrize(("rating", "expected"), [("6", "less than or equal to 5"),
                                                  ("0", "greater than or equal to 1")])
def test_callback_rating_outside_one_to_five(work, db, rating, expected):
    with nothing_changes(db):
        refused(decide(work["steps"]["callback"], work["by_role"]["csr"], f"rating={rating}"),
                "rating", expected, f"（实际为 {rating!r}）")


def test_refused_acceptance_needs_a_reason(work, db):
    with nothing_changes(db):
        refused(decide(work["steps"]["owner_acceptance"], work["by_role"]["csr"],
                       "accepted=false"),
                "reason", "字段 reason：不通过验收时必须填写原因 (required when accepted=false)；"
                "expected fields accepted, reason?")


def test_malformed_set(work, db):
    with nothing_changes(db):
        refused(decide(work["steps"]["complete"], work["by_role"]["technician"], "diagnosis"),
                "set", "'diagnosis'", "expected KEY=VALUE")


# --- policy file -------------------------------------------------------------------------------

def broken_policy(tmp_path: Path, edit: str | Callable[[dict], None]) -> Path:
    """The demo policy with one thing broken (or the given text)."""
    path = tmp_path / "policy.yaml"
    if isinstance(edit, str):
        path.write_text(edit, encoding="utf-8")
    else:
        data = yaml.safe_load(DEMO_POLICY.read_text(encoding="utf-8"))
        edit(data)
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _bad_window(p: dict) -> None:
    p["procedures"]["repair"]["steps"]["accept"]["high"]["window"] = "5x"


def _unknown_key(p: dict) -> None:
    p["procedures"]["repair"]["steps"]["accept"]["high"]["calender"] = "24x7"


def _undefined_channel(p: dict) -> None:
    p["routes"]["escalated"] = ["ops_bot"]


def _bad_level_window(p: dict) -> None:
    p["escalation"]["windows"]["csr"] = "soon"


@pytest.mark.parametrize(("edit", "field", "expected"), [
    (_bad_window, "procedures.repair.steps.accept.high.window",
     ["'5x' is not a duration", "expected e.g. 30m"]),
    (_unknown_key, "procedures.repair.steps.accept.high.calender",
     ["expected one of", "'calendar'", "'window'"]),
    ("- just\n- a list\n", "policy", ["expected a mapping", "procedures"]),
    ("procedures: {repair: [unclosed\n", "policy",
     ["第 2 行第 1 列不是合法的 YAML", "expected valid YAML"]),
    (_undefined_channel, "routes.escalated", ["'ops_bot'", "expected one of []"]),
    (_bad_level_window, "escalation.windows.csr", ["'soon' is not a duration"]),
], ids=["bad-window", "unknown-key", "not-a-mapping", "invalid-yaml", "undefined-channel",
        "bad-level-window"])
def test_malformed_policy_file(demo, db, env, tmp_path, edit, field, expected):
    path = broken_policy(tmp_path, edit)
    with nothing_changes(db):
        env("PROPFLOW_POLICY", str(path))
        for args in (["check"], ["cases", "list"], repair_open()):
            refused(args, field, str(path), *expected)


def test_missing_policy_file(demo, db, env, tmp_path):
    path = tmp_path / "nowhere.yaml"
    with nothing_changes(db):
        env("PROPFLOW_POLICY", str(path))
        refused(["check"], "PROPFLOW_POLICY", str(path), "不存在", "expected the path")


def test_fixed_policy_file_is_read_again(demo, env, tmp_path):
    path = broken_policy(tmp_path, _bad_window)
    env("PROPFLOW_POLICY", str(path))
    refused(["check"], "procedures.repair.steps.accept.high.window")
    shutil.copyfile(DEMO_POLICY, path)
    checked = ok(["check"])
    assert checked["ok"] is True and checked["policy"] == str(path)
    assert checked["procedures"] == sorted(PROCEDURES)


# --- database ----------------------------------------------------------------------------------

def test_unreachable_database(env):
    env("PROPFLOW_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    error = refused(["cases", "list"], "PROPFLOW_DATABASE_URL", "无法连接数据库",
                    "127.0.0.1:1", "expected a reachable database URL")
    assert error["error"] == "database_unreachable"
    refused(repair_open(), "PROPFLOW_DATABASE_URL")


# --- the clock ---------------------------------------------------------------------------------

def test_clock_cannot_move_in_normal_mode(demo, db):
    clock_module.set_clock(None)  # the real clock, as in production
    with nothing_changes(db):
        before = datetime.fromisoformat(ok(["clock", "show"])["utc"])
        error = refused(["clock", "advance", "2h"], "PROPFLOW_MODE",
                        "expected PROPFLOW_MODE=training")
        after = datetime.fromisoformat(ok(["clock", "show"])["utc"])
    assert error["error"] == "forbidden"
    assert (after - before).total_seconds() < 60  # still the wall clock, not moved 2 h


def test_training_clock_moves_forward_only(demo, db, env):
    env("PROPFLOW_MODE", "training")
    clock_module.set_clock(None)  # the TrainingClock kept in the database
    shown = ok(["clock", "show"])
    assert shown["mode"] == "training"
    start = datetime.fromisoformat(shown["utc"])
    moved = ok(["clock", "advance", "2h"])
    now = datetime.fromisoformat(ok(["clock", "show"])["utc"])
    assert now - start == timedelta(hours=2)
    assert moved["now"] == ok(["clock", "show"])["now"]

    with nothing_changes(db):
        for delta, expected in (("-1h", "'-1h' is not a duration"),
                                ("0m", "'0m' is not a positive duration"),
                                ("soon", "'soon' is not a duration")):
            refused(["clock", "advance", delta], "delta", "向前", expected, "expected e.g. 30m")
    assert datetime.fromisoformat(ok(["clock", "show"])["utc"]) == now
