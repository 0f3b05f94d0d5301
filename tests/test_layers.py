"""The packages stay in layers (core < models < notifications < tasks < flows < propflow),
without cycles, and importing them leaves the environment alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "scripts" / "check_layers.py"
LAYERS = ("core", "models", "notifications", "tasks", "flows", "propflow")


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK), "--root", str(root)],
                          capture_output=True, text=True, timeout=60)


def test_the_project_has_no_upward_import_and_no_cycle():
    done = check(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("layers: ok")


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for package in LAYERS:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_an_upward_import_fails_even_inside_a_function(tmp_path):
    root = tree(tmp_path, {
        "core/clock.py": "def now():\n    from models.db import unit_of_work\n",
        "models/db.py": "from core import clock\n",
    })
    done = check(root)
    assert done.returncode == 1
    assert "core/clock.py:2: core imports models.db (a layer above)" in done.stdout
    assert "package cycle: core -> models -> core" in done.stdout


def test_a_relative_import_stays_in_its_package(tmp_path):
    root = tree(tmp_path, {"models/steps.py": "from . import db\nfrom .db import x\n",
                           "models/db.py": "from core.errors import E\n"})
    assert check(root).returncode == 0


def test_importing_our_packages_changes_no_environment_variable():
    code = (
        "import json, os\n"
        "before = dict(os.environ)\n"
        "import core.clock, core.policy, models.db, models.steps, notifications.delivery\n"
        "import propflow, propflow.actions, propflow.cli\n"
        "after = dict(os.environ)\n"
        "print(json.dumps(sorted(k for k in before.keys() | after.keys()"
        " if before.get(k) != after.get(k))))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
