"""One module per procedure, as the registry (core/procedures.py) names them."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from core.procedures import DUTIES, get


def flow_for(procedure: str) -> Any:
    """The procedure's flow, imported from its declared entrypoint "flows/<name>.py:<fn>"."""
    spec = get(procedure)
    return getattr(import_module(spec.flow_module), spec.flow_name)


def duty_flow(name: str) -> Any:
    """A scheduled duty's flow (core/procedures.py DUTIES), from its declared entrypoint."""
    spec = DUTIES[name]
    return getattr(import_module(spec.flow_module), spec.flow_name)
