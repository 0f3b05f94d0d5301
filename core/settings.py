"""One settings object, read from the environment (PROPFLOW_*).

A dataclass filled from os.environ rather than pydantic-settings: every command reads the
settings, and pydantic-settings (its sources, dotenv, argparse) with a pydantic model built
at import cost a read command more than a tenth of its start (bench/cli_startup.py). The
variables are read as they were: the name in any case, each value converted as pydantic
did (a bool from true/false/1/0/yes/no/on/off) and refused with the same message."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from core.errors import PropflowError

DEMO_POLICY = Path(__file__).parent / "policy" / "demo.yaml"


PREFIX = "propflow_"


@dataclass(frozen=True)
class Settings:
    home: Path = Path(".propflow")
    database_url: str | None = None
    mode: Literal["normal", "training"] = "normal"
    policy: Path = DEMO_POLICY
    lang: str = "zh-CN"
    # How often a run paused in-process (tests, scripts) asks Prefect whether it was resumed.
    pause_poll_seconds: float = 2.0
    sla_interval_seconds: float = 5.0
    outbox_interval_seconds: float = 3.0
    # false: `propflow serve` runs no case itself (a work pool's workers run them from
    # prefect.yaml); it keeps the SLA clock, run supervision and delivery.
    serve_runs: bool = True
    # How `propflow serve` executes case runs: "threads", in its own process (a resumed run
    # goes on in ~0.1 s); "processes", Prefect's Runner, a new interpreter for every run
    # and every resume (~2 s and ~90 MiB each). README, "A warm executor".
    executor: Literal["threads", "processes"] = "threads"
    run_threads: int = 8  # runs executing at once; a waiting (suspended) run takes none
    run_poll_seconds: float = 0.5  # how often serve asks Prefect for runs to take
    # How often a run executing in serve shows Prefect it is alive; one silent for 6 beats
    # (30 s) lost its service and is restarted by run supervision (propflow/executor.py).
    run_heartbeat_seconds: float = 5.0
    # The web door (propflow/web), served by `propflow serve`; 0 serves none.
    web_port: int = 8080
    web_host: str = "127.0.0.1"
    # Signs session cookies and one-tap links; unset: one is made once under PROPFLOW_HOME.
    secret_key: str | None = None
    # Where people reach the web door from outside: one-tap links in messages start with it.
    # Unset: the web door's own address (web_host:web_port).
    public_url: str | None = None

    @property
    def link_base(self) -> str:
        return (self.public_url or f"http://{self.web_host}:{self.web_port}").rstrip("/")

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.home.resolve() / 'propflow.db'}"


@lru_cache
def get_settings() -> Settings:
    ours = {key.lower().removeprefix(PREFIX): value for key, value in os.environ.items()
            if key.lower().startswith(PREFIX)}
    types = get_type_hints(Settings)
    return Settings(**{f.name: _value(f.name, types[f.name], ours[f.name])
                       for f in fields(Settings) if f.name in ours})


_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


def _value(name: str, kind: Any, raw: str) -> Any:
    """One variable as its field's type; refused naming the variable and what it accepts."""
    choices = get_args(kind) if get_origin(kind) is Literal else ()
    try:
        if choices:
            if raw in choices:
                return raw
        elif kind is bool:
            if raw.strip().lower() in _TRUE | _FALSE:
                return raw.strip().lower() in _TRUE
        elif kind in (int, float, Path):
            return kind(raw)
        else:  # str, or str | None
            return raw
    except ValueError:
        pass
    env = f"{PREFIX.upper()}{name.upper()}"
    expected = f"one of {list(choices)}" if choices else f"a {kind.__name__}"
    raise PropflowError(f"{env}：{raw!r} 不是有效值；expected {expected}", field=env)


def reset_settings() -> None:
    get_settings.cache_clear()
