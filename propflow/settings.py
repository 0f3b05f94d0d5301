"""One settings object, read from the environment (PROPFLOW_*)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

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

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.home.resolve() / 'propflow.db'}"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    get_settings.cache_clear()
