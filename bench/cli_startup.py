"""What a read command costs to start: `propflow steps list` against a bare interpreter that
imports the libraries every command needs anyway, run in turns side by side.

A throwaway home with the demo company and a few waiting steps (no Prefect involved).
Bytecode is cached in a temporary directory (PYTHONPYCACHEPREFIX), so both commands run as
they would on an installed machine even where PYTHONDONTWRITEBYTECODE is set, and nothing
is written into the source tree. Prints wall and CPU time, medians; asserts nothing.

    .venv/bin/python bench/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

parser = argparse.ArgumentParser()
parser.add_argument("--runs", type=int, default=15)
args = parser.parse_args()

tmp = Path(tempfile.mkdtemp(prefix="propflow-bench-cli-"))
env = {k: v for k, v in os.environ.items()
       if not k.startswith("PROPFLOW_") and k != "PYTHONDONTWRITEBYTECODE"}
env.update(PROPFLOW_HOME=str(tmp), PYTHONPYCACHEPREFIX=str(tmp / "pycache"))

COMMANDS = {
    "libraries": [PY, "-c", "import sqlalchemy, typer, pydantic, yaml, jinja2"],
    "steps list": [PY, "-m", "propflow.cli", "steps", "list"],
}
SETUP = """
from propflow import actions
from propflow.demo import seed
seed()
for unit in ("1-1-101", "1-2-301", "2-1-201"):
    actions.open_repair(start_run=False, unit=unit, category="public_area", priority="medium",
                        reporter="张三", phone="13800138000", description="楼道灯不亮",
                        channel="phone")
"""


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run. CPU time barely moves when other work shares the
    machine; wall time is what a person waits."""
    c0, t0 = cpu(), time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0, cpu() - c0


subprocess.run([PY, "-m", "propflow.cli", "db", "upgrade"], cwd=ROOT, env=env, check=True,
               stdout=subprocess.DEVNULL)
subprocess.run([PY, "-c", SETUP], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
for cmd in COMMANDS.values():  # warm the bytecode cache and the page cache
    run(cmd)
wall: dict[str, list[float]] = {name: [] for name in COMMANDS}
used: dict[str, list[float]] = {name: [] for name in COMMANDS}
for _ in range(args.runs):
    for name, cmd in COMMANDS.items():  # in turns: a busy machine slows both alike
        w, c = run(cmd)
        wall[name].append(w)
        used[name].append(c)

print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {args.runs} runs each")
for name in COMMANDS:
    print(f"{name:12} wall median {statistics.median(wall[name]):.3f} s  min "
          f"{min(wall[name]):.3f} s   cpu median {statistics.median(used[name]):.3f} s")
for label, values in (("wall", wall), ("cpu", used)):
    ratio = statistics.median(values["steps list"]) / statistics.median(values["libraries"])
    print(f"steps list / libraries ({label}, medians): {ratio:.2f}x (target at most 1.6x)")
