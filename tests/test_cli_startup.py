"""A read command starts without what it does not use (issue 6: `propflow steps list` costs at
most 1.6 x importing the libraries every command needs; bench/cli_startup.py measures it):
not Prefect, not Alembic once the schema is at its newest migration, not pydantic-settings,
not the PostgreSQL dialect on SQLite, not the step forms (pydantic models built at import) nor
the holiday tables when no form is checked and no date computed."""

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
NOT_NEEDED = ("prefect", "alembic", "pydantic_settings", "dotenv",
              "sqlalchemy.dialects.postgresql", "models.forms", "chinese_calendar")


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
