"""The procedure registry (core/procedures.py) is the one place a procedure is declared:
prefect.yaml, the deployments started and served, the forms, the labels, the policy's
required steps and the CLI's intake commands all follow it. Fast tier: no Prefect server."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from core import labels
from core.errors import PropflowError
from core.policy import get_policy, load_policy
from core.procedures import DUTIES, PROCEDURES, STEPS
from models.forms import FORMS, ResolveForm, ResultForm
from models.intake import example, model_of
from propflow import actions, deployments
from propflow.cli import app
from tasks import runs
from tests.registry_example import POLICY_SECTION

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_committed_prefect_yaml_is_what_the_registry_generates():
    """CI fails here when prefect.yaml and core/procedures.py differ: run
    `propflow deployments write` and commit the file."""
    assert deployments.PREFECT_YAML.read_text(encoding="utf-8") == deployments.render(), \
        "prefect.yaml is stale: run `propflow deployments write`"
    found = yaml.safe_load(deployments.render())
    # Each procedure's deployment, an inspection plan's own after the inspection one.
    plans = get_policy().procedures["inspection"].plans
    # Then the scheduled duties that are no procedure (the monthly report).
    assert [d["name"] for d in found["deployments"]] == [
        *(n for p in PROCEDURES for n in (p, *(plans if p == "inspection" else ()))),
        *DUTIES]
    for d in found["deployments"][-len(DUTIES):]:
        assert d["entrypoint"] == DUTIES[d["name"]].flow
        assert d["schedules"] == [{"cron": DUTIES[d["name"]].schedule,
                                   "timezone": "Asia/Shanghai"}]
    for d in found["deployments"]:
        if d["name"] in plans:
            assert d["entrypoint"] == "flows/inspection.py:inspection"
            assert d["parameters"] == {"plan": d["name"]}
            assert d["schedules"] == [{"cron": plans[d["name"]].cron,
                                       "timezone": "Asia/Shanghai"}]
    procedures = [d for d in found["deployments"] if d["name"] in PROCEDURES]
    for spec, d in zip(PROCEDURES.values(), procedures, strict=True):
        assert d["entrypoint"] == spec.flow
        assert d["tags"] == ["propflow", spec.name]
        assert d["work_pool"] == {"name": "propflow", "work_queue_name": "procedures"}
        # The entrypoint names a flow that exists, read without importing Prefect.
        path, _, function = spec.flow.partition(":")
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        assert function in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    done = runner.invoke(app, ["deployments", "write", "--check", "--json"])
    assert done.exit_code == 0, (done.stdout, done.stderr)
    assert json.loads(done.stdout)["matches_registry"] is True


def test_a_stale_prefect_yaml_is_refused_naming_the_command_that_fixes_it(tmp_path):
    stale = tmp_path / "prefect.yaml"
    stale.write_text(deployments.render().replace("name: emergency", "name: emergncy"),
                     encoding="utf-8")
    with pytest.raises(PropflowError) as caught:
        deployments.check(stale)
    assert "propflow deployments write" in caught.value.message
    assert deployments.write(stale) is True
    deployments.check(stale)
    assert deployments.write(stale) is False  # unchanged: nothing written


def test_runs_are_started_from_the_deployments_the_registry_names():
    assert runs.DEPLOYMENTS == {"repair": "repair/repair", "complaint": "complaint/complaint",
                                "emergency": "emergency/emergency", "movein": "movein/movein",
                                "visit": "visit/visit", "reception": "reception/reception",
                                "inspection": "inspection/inspection",
                                "building_report": "building_report/building_report"}


def test_served_flows_are_the_registered_ones():
    from propflow import service

    assert [f.name for f in service.case_flows()] == [p.flow_name for p in PROCEDURES.values()]


def test_forms_labels_and_policy_steps_follow_the_registry():
    assert set(FORMS) == {f"{p.name}.{s.kind}" for p in PROCEDURES.values() for s in p.steps}
    # The same kind asks for different things in different procedures.
    assert FORMS["complaint.resolve"] is ResultForm
    assert FORMS["emergency.resolve"] is ResolveForm
    assert labels.step("repair", "owner_acceptance", "zh-CN") == "业主验收"
    assert labels.step("emergency", "incident_report", "en") == "incident report"
    assert labels.procedure("complaint", "zh-CN") == "投诉"
    assert STEPS["complaint"] == PROCEDURES["complaint"].kinds


def test_cli_intake_commands_are_generated_from_the_input_models():
    for spec in PROCEDURES.values():
        shown = runner.invoke(app, [spec.name, spec.command, "--help"], terminal_width=200)
        assert shown.exit_code == 0, shown.output
        for field, info in model_of(spec.name).model_fields.items():
            option = (info.alias or field).replace("_", "-")  # a visit's --class
            assert f"--{option}" in shown.output, (spec.name, field)
        # The service layer's opener of the same name, e.g. actions.report_emergency.
        assert callable(getattr(actions, f"{spec.command}_{spec.name}"))
        assert example(spec.name), f"{spec.name}: its input model gives an example"


def test_an_unknown_or_missing_intake_field_is_refused_by_name(demo, db):
    with pytest.raises(PropflowError) as caught:
        actions.open_case("repair", example("repair") | {"colour": "red"}, start_run=False)
    assert caught.value.field == "colour"
    assert "expected fields unit, category" in caught.value.message
    fields = example("complaint")
    del fields["phone"]
    with pytest.raises(PropflowError) as caught:
        actions.open_case("complaint", fields, start_run=False)
    assert caught.value.field == "phone" and "缺少" in caught.value.message
    with pytest.raises(PropflowError) as caught:
        actions.open_case("move_out", {}, start_run=False)
    assert caught.value.field == "procedure" and "'repair'" in caught.value.message


def test_the_policy_need_not_give_a_prefix_and_may_not_contradict_the_registry(policy_with):
    data = yaml.safe_load(load_policy.__globals__["get_settings"]().policy.read_text("utf-8"))
    assert all("prefix" not in section for section in data["procedures"].values())
    repair = data["procedures"]["repair"] | {"prefix": "WX"}
    path = policy_with(procedures=data["procedures"] | {"repair": repair})
    with pytest.raises(PropflowError) as caught:
        load_policy(path)
    assert caught.value.field == "procedures.repair.prefix"
    assert "'BX'" in caught.value.message
    path = policy_with(procedures=data["procedures"] | {"repair": repair | {"prefix": "BX"}})
    assert load_policy(path).procedures["repair"].prefix == "BX"


# --- adding a procedure: one registry entry ----------------------------------------------------

SCRIPT = r"""
import json, os, sys
from core.procedures import register
from tests.registry_example import MOVE_IN
register(MOVE_IN)  # the one entry; everything below is derived from it

from typer.testing import CliRunner
from core import labels
from core.settings import reset_settings
from models.db import unit_of_work
from models import directory, steps
from models.forms import FORMS
from core.policy import get_policy
from propflow import actions, deployments
from propflow.cli import app
from tasks import runs

r = CliRunner()
def cli(*args):
    res = r.invoke(app, [*map(str, args)], terminal_width=200)
    return {"code": res.exit_code, "out": res.stdout, "err": res.stderr}

out = {"check_without_section": cli("check")}
os.environ["PROPFLOW_POLICY"] = sys.argv[1]
reset_settings()
out["check"] = cli("check", "--json")
out["help"] = cli("move_in", "open", "--help")
out["bad_phone"] = cli("move_in", "open", "--unit", "1-1-101", "--resident", "张三",
                       "--phone", "110")
seed = json.loads(cli("demo", "seed", "--json")["out"])
csr = next(p["id"] for p in seed["staff"] if p["role"] == "csr")
case = actions.open_move_in(start_run=False, unit="1-1-101", resident="业主张三",
                            phone="13800138000")
with unit_of_work() as session:
    row = directory.case(session, case["number"])
    step = steps.open_step(session, case=row, key="handover#1", kind="handover", role="csr",
                           now=row.created_at).id
out["show"] = json.loads(cli("steps", "show", step, "--json")["out"])
out["bad_decision"] = cli("steps", "decide", step, "--as", csr, "--set", "keys=2")
out["decided"] = json.loads(cli("steps", "decide", step, "--as", csr, "--set", "note=钥匙已交",
                                "--json")["out"])
out.update(
    case=case, notices=actions.show_case(case["number"])["notifications"],
    forms=sorted(k for k in FORMS if k.startswith("move_in.")),
    label=labels.step("move_in", "handover", "zh-CN"),
    deployment=runs.DEPLOYMENTS["move_in"], prefect_yaml=deployments.render(),
    prefect_imported="prefect" in sys.modules, flow_imported="flows.move_in" in sys.modules,
)
print(json.dumps(out, ensure_ascii=False, default=str))
"""


def test_adding_a_procedure_is_one_registry_entry(tmp_path):
    """A throwaway procedure (tests/registry_example.py), registered before the layers above
    load, as an entry in core/procedures.py would be: its CLI command, forms, label,
    deployment and prefect.yaml entry appear, its cases are numbered with its prefix, and
    the policy check asks for its section."""
    policy = yaml.safe_load((ROOT / "core/policy/demo.yaml").read_text(encoding="utf-8"))
    policy["procedures"]["move_in"] = POLICY_SECTION
    with_section = tmp_path / "policy.yaml"
    with_section.write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PROPFLOW_DATABASE_URL", "PROPFLOW_POLICY", "PROPFLOW_MODE")}
    env["PROPFLOW_HOME"] = str(tmp_path / "home")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(with_section)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])

    assert out["check_without_section"]["code"] == 2
    assert "procedures.move_in" in out["check_without_section"]["err"]
    assert out["check"]["code"] == 0 and "move_in" in json.loads(out["check"]["out"])[
        "procedures"]
    assert out["help"]["code"] == 0
    for option in ("--unit", "--resident", "--phone", "--community", "登记入住"):
        assert option in out["help"]["out"]
    assert out["bad_phone"]["code"] == 2 and "phone：'110'" in out["bad_phone"]["err"]

    assert out["case"]["number"].startswith("RZ-") and out["case"]["procedure"] == "move_in"
    assert out["forms"] == ["move_in.handover"]
    assert [f["name"] for f in out["show"]["fields"]] == ["note"]
    assert out["bad_decision"]["code"] == 2 and "keys" in out["bad_decision"]["err"]
    assert out["decided"]["delivery"] == "queued"
    subjects = [n["subject"] for n in out["notices"]]
    assert any(s.startswith("您的报修已受理：RZ-") for s in subjects), subjects  # its templates
    assert any("交房" in s for s in subjects), subjects  # the step, by its label
    assert out["label"] == "交房"
    assert out["deployment"] == "move_in/move_in"
    assert "  - name: move_in\n    entrypoint: flows/move_in.py:move_in\n" in out["prefect_yaml"]
    # Read and write commands never import Prefect or a flow: only serve and runs do.
    assert not out["prefect_imported"] and not out["flow_imported"]
