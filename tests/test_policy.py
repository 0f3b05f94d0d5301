"""The policy file: `propflow check` refuses what would break a case later, naming the file,
the key and what was expected; a running process follows valid edits of the file.

Fast tier: no Prefect server, no database beyond the CLI's own SQLite file.
"""

from __future__ import annotations

import ast
import json
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

import core.policy.file
from core.errors import PropflowError
from core.policy import get_policy, load_policy
from core.procedures import DUTIES, STEPS
from core.settings import DEMO_POLICY
from propflow.cli import app

runner = CliRunner()
FLOWS = Path(__file__).resolve().parents[1] / "flows"


def demo() -> dict:
    return yaml.safe_load(DEMO_POLICY.read_text(encoding="utf-8"))


def broken(policy_with: Callable[..., Path], edit: Callable[[dict], None]) -> Path:
    data = demo()
    edit(data)
    return policy_with(**data)


def refused(path: Path, key: str, *expected: str) -> str:
    """load_policy and `propflow check` (text and --json) refuse it alike, without a
    traceback: the message names the file, the key and what was expected."""
    with pytest.raises(PropflowError) as caught:
        load_policy(path)
    assert caught.value.field == key
    message = caught.value.message
    for part in (str(path), f"键 {key}：", "expected", *expected):
        assert part in message, (part, message)

    text = runner.invoke(app, ["check"])
    assert text.exit_code == 2, (text.stdout, text.stderr, text.exception)
    assert "Traceback" not in text.output
    assert text.stdout == ""
    assert text.stderr == f"错误：{message}\n"
    as_json = runner.invoke(app, ["check", "--json"])
    assert as_json.exit_code == 2
    assert json.loads(as_json.stderr) == {"error": "invalid", "field": key, "message": message}
    return message


# --- finding 6: each of these passed `propflow check` with ok: True ----------------------------

def test_unknown_role_in_the_escalation_chain(policy_with):
    path = broken(policy_with, lambda p: p["escalation"].update(
        chain=["cs_supervisor", "boss", "company_cs"]))
    refused(path, "escalation.chain[1]", "'boss'", "expected one of", "'project_manager'")


def test_unknown_role_in_a_step_chain(policy_with):
    def edit(p: dict) -> None:
        p["procedures"]["repair"]["steps"]["quote"]["default"]["chain"] = ["csr", "cs_supervisr"]

    path = broken(policy_with, edit)
    refused(path, "procedures.repair.steps.quote.default.chain[1]", "'cs_supervisr'",
            "'cs_supervisor'")


def test_unknown_role_in_level_windows(policy_with):
    def edit(p: dict) -> None:
        p["procedures"]["emergency"]["level_windows"]["duty_manager"] = "5m"

    path = broken(policy_with, edit)
    refused(path, "procedures.emergency.level_windows.duty_manager", "未知的角色",
            "expected one of", "'project_manager'")


def test_empty_chain(policy_with):
    path = broken(policy_with, lambda p: p["procedures"]["complaint"].update(chain=[]))
    refused(path, "procedures.complaint.chain", "升级链为空", "expected at least one role")


def test_business_hours_out_of_order(policy_with):
    path = policy_with(business_hours={"start": "18:30", "end": "08:30"})
    refused(path, "business_hours", "18:30", "08:30", "expected start before end")


def test_unknown_time_zone(policy_with):
    path = policy_with(timezone="Mars/Olympus")
    refused(path, "timezone", "'Mars/Olympus'", "expected an IANA time zone", "Asia/Shanghai")


def test_procedure_missing_a_step(policy_with):
    path = broken(policy_with, lambda p: p["procedures"]["repair"]["steps"].pop("quote"))
    refused(path, "procedures.repair.steps.quote", "缺少步骤 quote",
            "expected a window for every step the repair flow asks for")


def test_procedure_missing_a_priority(policy_with):
    path = broken(policy_with, lambda p: p["procedures"]["repair"]["steps"]["accept"].pop("low"))
    refused(path, "procedures.repair.steps.accept.low", "缺少优先级 low",
            "expected default or each of ['high', 'medium', 'low']")


def test_bad_holiday_date_is_named_not_a_traceback(policy_with):
    path = policy_with()
    text = path.read_text(encoding="utf-8")
    assert "extra_holidays: []" in text
    # Unquoted, as a person types it: YAML itself fails to build the date.
    path.write_text(text.replace("extra_holidays: []", "extra_holidays: [2026-10-01, 2026-02-30]"),
                    encoding="utf-8")
    refused(path, "calendar.extra_holidays[1]", "不是有效日期", "2026-02-30",
            "expected a date such as 2026-10-01")


# --- more of the same kind ---------------------------------------------------------------------

def test_unknown_department_and_fanout_roles(policy_with):
    def department(p: dict) -> None:
        p["procedures"]["complaint"]["categories"]["noise"]["department"] = "police"

    refused(broken(policy_with, department), "procedures.complaint.categories.noise.department",
            "'police'")

    def fanout(p: dict) -> None:
        p["procedures"]["emergency"]["kinds"]["fire"]["fanout"][1]["role"] = "firemen"

    refused(broken(policy_with, fanout), "procedures.emergency.kinds.fire.fanout[1].role",
            "'firemen'")


def test_unknown_step_priority_and_procedure(policy_with):
    def step(p: dict) -> None:
        p["procedures"]["repair"]["steps"]["acept"] = {"default": {"window": "30m"}}

    refused(broken(policy_with, step), "procedures.repair.steps.acept", "未知的步骤",
            "expected one of ['dispatch', 'accept'")

    def priority(p: dict) -> None:
        p["procedures"]["repair"]["steps"]["dispatch"]["urgent"] = {"window": "5m"}

    refused(broken(policy_with, priority), "procedures.repair.steps.dispatch.urgent",
            "未知的优先级", "expected one of ['default', 'high', 'medium', 'low']")

    def procedure(p: dict) -> None:
        p["procedures"]["move_in"] = {"prefix": "RH", "steps": {}}

    refused(broken(policy_with, procedure), "procedures.move_in", "未知的流程",
            "expected one of ['building_report', 'complaint', 'emergency', ")  # then the others

    refused(broken(policy_with, lambda p: p["procedures"].pop("emergency")),
            "procedures.emergency", "缺少流程 emergency")


def test_procedure_without_priorities_needs_a_default(policy_with):
    def edit(p: dict) -> None:
        p["procedures"]["complaint"]["steps"]["investigate"] = {
            "high": {"window": "4h"}, "low": {"window": "24h"}}

    refused(broken(policy_with, edit), "procedures.complaint.steps.investigate.default",
            "expected a default window")

    # One window alone is what Policy.rule() falls back to: accepted, and used.
    def single(p: dict) -> None:
        p["procedures"]["complaint"]["steps"]["investigate"] = {"high": {"window": "4h"}}

    load_policy(broken(policy_with, single))
    assert get_policy().rule("complaint", "investigate", "medium").window == timedelta(hours=4)


def test_the_demo_policy_passes(policy_with):
    policy_with()
    result = runner.invoke(app, ["check", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True


# --- the steps each flow asks for ------------------------------------------------------------

def _tables(tree: ast.Module) -> dict[str, set[str]]:
    """Module-level dicts keyed by string literals: step tables a flow loops over."""
    tables: dict[str, set[str]] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else \
            node.target if isinstance(node, ast.AnnAssign) else None
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Dict) and all(
                isinstance(k, ast.Constant) and isinstance(k.value, str) for k in value.keys):
            tables[target.id] = {k.value for k in value.keys if isinstance(k, ast.Constant)}
    return tables


def _looped(tree: ast.Module) -> dict[str, set[str]]:
    """Names bound by `for kind, role in TABLE.items()` (or over TABLE): the table's keys."""
    tables = _tables(tree)
    bound: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.For, ast.comprehension)):
            continue
        source = node.iter
        if isinstance(source, ast.Call) and isinstance(source.func, ast.Attribute) \
                and source.func.attr in ("items", "keys"):
            source = source.func.value
        first = node.target.elts[0] if isinstance(node.target, ast.Tuple) else node.target
        if isinstance(source, ast.Name) and source.id in tables and isinstance(first, ast.Name):
            bound[first.id] = tables[source.id]
    return bound


def _asked(source: str) -> tuple[set[str], list[int]]:
    """The step kinds a flow module opens, and the lines where the kind is not a literal
    (nor a name looping over a module-level table of literals)."""
    kinds: set[str] = set()
    unreadable: list[int] = []
    tree = ast.parse(source)
    looped = _looped(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        if node.func.id in ("ask", "open_step") and len(node.args) >= 3:
            found = [node.args[2]]
        elif node.func.id == "ask_all" and len(node.args) >= 2:
            asks = node.args[1]
            found = [e.elts[1] for e in asks.elts if isinstance(e, ast.Tuple)] \
                if isinstance(asks, ast.List) else [asks]
        else:
            continue
        for kind in found:
            if isinstance(kind, ast.Constant) and isinstance(kind.value, str):
                kinds.add(kind.value)
            elif isinstance(kind, ast.Name) and kind.id in looped:
                kinds |= looped[kind.id]
            else:
                unreadable.append(node.lineno)
    return kinds, unreadable


def test_declared_steps_match_what_the_flows_ask_for():
    modules = {p.stem: p for p in FLOWS.glob("*.py")
               if p.stem not in ("__init__", "human", "outcome")}  # the step primitive's
    duties = {DUTIES[d].flow_module.rpartition(".")[2] for d in DUTIES}  # no procedure's
    assert set(modules) == set(STEPS) | duties, \
        "every procedure flow is declared in core/procedures.py"
    for name, module in modules.items():
        kinds, unreadable = _asked(module.read_text(encoding="utf-8"))
        if name in duties:  # a scheduled duty asks nobody
            assert not kinds and not unreadable, (name, sorted(kinds))
            continue
        assert not unreadable, f"flows/{name}.py lines {unreadable}: write the step kind " \
                               "as a literal, so the policy check can know it"
        assert kinds == set(STEPS[name]), (name, sorted(kinds), STEPS[name])


# --- reloading while the process runs ----------------------------------------------------------

def _write_window(path: Path, window: str) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["procedures"]["repair"]["steps"]["accept"]["medium"]["window"] = window
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def _accept_window() -> timedelta | None:
    return get_policy().rule("repair", "accept", "medium").window


def test_valid_edit_is_picked_up_while_running(policy_with):
    path = policy_with()
    assert _accept_window() == timedelta(minutes=30)
    _write_window(path, "1h")
    assert _accept_window() == timedelta(hours=1)
    _write_window(path, "2h")
    assert _accept_window() == timedelta(hours=2)


def test_two_edits_within_one_timestamp_tick_are_both_seen(policy_with, monkeypatch):
    """A file system stamps times coarsely: an edit can keep the size, the inode and the
    mtime of the version read a moment before. It must still be read."""
    path = policy_with()
    before = path.stat()
    # The process reads the file within the same tick as it was written.
    tick = SimpleNamespace(time_ns=lambda: before.st_mtime_ns + 1_000_000)
    monkeypatch.setattr(core.policy.file, "wall", tick)
    assert _accept_window() == timedelta(minutes=30)
    _write_window(path, "45m")  # same length as 30m: same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_mtime_ns, after.st_size, after.st_ino) == \
        (before.st_mtime_ns, before.st_size, before.st_ino)
    assert _accept_window() == timedelta(minutes=45)


def test_invalid_edit_while_running_keeps_the_last_valid_policy(policy_with, caplog):
    """Chosen: a running service keeps working on the last valid policy and logs the error
    once; `propflow check` and any new process refuse the file until it is fixed."""
    path = policy_with()
    _write_window(path, "1h")
    assert _accept_window() == timedelta(hours=1)

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["procedures"]["repair"]["steps"]["accept"]["medium"] = {"window": "2h", "chain": ["boss"]}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="propflow.policy"):
        assert _accept_window() == timedelta(hours=1)
        assert _accept_window() == timedelta(hours=1)
    logged = [r.getMessage() for r in caplog.records if r.name == "propflow.policy"]
    assert len(logged) == 1, logged
    assert "继续使用上一个有效版本" in logged[0]
    assert "procedures.repair.steps.accept.medium.chain[0]" in logged[0] and "'boss'" in logged[0]
    refused(path, "procedures.repair.steps.accept.medium.chain[0]", "'boss'")

    data["procedures"]["repair"]["steps"]["accept"]["medium"] = {"window": "3h"}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert _accept_window() == timedelta(hours=3)


def test_invalid_file_refuses_a_fresh_start(policy_with):
    """No valid version seen yet in this process: nothing to keep, so get_policy refuses."""
    path = broken(policy_with, lambda p: p.update(timezone="Mars/Olympus"))
    with pytest.raises(PropflowError) as caught:
        get_policy()
    assert caught.value.field == "timezone" and str(path) in caught.value.message
