"""A read command starts without what it does not use (issue 6: `propflow steps list` costs at
most 1.6 x importing the libraries every command needs; bench/cli_startup.py measures it):
not Prefect, not Alembic once the schema is at its newest migration, not pydantic-settings,
not the PostgreSQL dialect on SQLite, not httpx (only a start of a run needs it), not pydantic
at all: neither the step and intake forms nor the policy's models (a policy file found valid
before is known by its digest), nor the holiday tables when no form is checked and no date
computed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, runpy, sys
sys.argv = ["propflow", "steps", "list", "--json"]
try:
    runpy.run_module("propflow.cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""
NOT_NEEDED = ("prefect", "alembic", "pydantic", "dotenv", "sqlalchemy.dialects.postgresql",
              "models.forms", "models.intake", "core.policy.file", "chinese_calendar", "httpx")


def test_steps_list_imports_nothing_it_does_not_use(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROPFLOW_")}
    env["PROPFLOW_HOME"] = str(tmp_path)
    subprocess.run([sys.executable, "-m", "propflow.cli", "db", "upgrade"], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=120)
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None), done.stderr[-2000:]
    assert json.loads(done.stdout) == []
    loaded = [m for m in report["modules"] if m.startswith(NOT_NEEDED)]
    assert loaded == [], loaded


def test_a_policy_broken_after_it_was_found_valid_is_refused_by_a_read_command(tmp_path):
    """The digest that lets a command skip validation is the file's: any edit validates it
    again, and a broken one is refused, naming the key."""
    policy = tmp_path / "policy.yaml"
    policy.write_text((ROOT / "core/policy/demo.yaml").read_text("utf-8"), "utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROPFLOW_")}
    env.update(PROPFLOW_HOME=str(tmp_path), PROPFLOW_POLICY=str(policy))

    def steps_list() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "propflow.cli", "steps", "list"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)

    assert steps_list().returncode == 0
    text = policy.read_text("utf-8")
    assert "timezone: Asia/Shanghai" in text
    policy.write_text(text.replace("timezone: Asia/Shanghai", "timezone: Mars/Olympus"), "utf-8")
    refused = steps_list()
    assert refused.returncode == 2, refused.stderr
    assert "Mars/Olympus" in refused.stderr and "Traceback" not in refused.stderr


def test_a_listing_piped_into_head_ends_quietly(tmp_path):
    """`propflow cases list | head -3`: the reader has gone before the rest is written; the
    command stops quietly, as Unix tools do, not with an internal error and a reference."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROPFLOW_")}
    env["PROPFLOW_HOME"] = str(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has already gone: every write meets a broken pipe
    try:
        done = subprocess.run([sys.executable, "-m", "propflow.cli", "demo", "seed"],
                              cwd=ROOT, env=env, stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write_end)
    assert "内部错误" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 0
