# Shared by scripts/run and scripts/test: a .venv with propflow installed, and the environment.
# shellcheck shell=bash
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the dependencies changed.
stamp=".venv/.propflow-installed"
want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing propflow and its dependencies into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test]"
  echo "$want" > "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
export PROPFLOW_HOME="${PROPFLOW_HOME:-$ROOT/.propflow}"
mkdir -p "$PROPFLOW_HOME"
export PROPFLOW_HOME="$(cd "$PROPFLOW_HOME" && pwd)"
export PREFECT_HOME="$PROPFLOW_HOME/prefect"
export PREFECT_PORT="${PREFECT_PORT:-4200}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
