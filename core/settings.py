"""One settings object, read from the environment (PROPFLOW_*)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args, get_origin

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import PropflowError

DEMO_POLICY = Path(__file__).parent / "policy" / "demo.yaml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROPFLOW_", extra="ignore")

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
    public_url: str = "http://127.0.0.1:8080"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.home.resolve() / 'propflow.db'}"


@lru_cache
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise _refused(exc) from None


def _refused(exc: ValidationError) -> PropflowError:
    """The first bad variable, by its environment name, with what it accepts."""
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else ""
    env = f"PROPFLOW_{name.upper()}"
    field = Settings.model_fields.get(name)
    choices = get_args(field.annotation) if field and get_origin(field.annotation) is Literal \
        else ()
    kind = getattr(field.annotation, "__name__", "value") if field else "value"
    expected = f"one of {list(choices)}" if choices else f"a {kind}"
    return PropflowError(f"{env}：{err.get('input')!r} 不是有效值；expected {expected}",
                         field=env)


def reset_settings() -> None:
    get_settings.cache_clear()
