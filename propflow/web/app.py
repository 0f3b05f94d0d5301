"""The FastAPI application behind every web door; `propflow serve` runs it (server.py)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from propflow.web import (
    api,
    checkin,
    dashboard,
    events,
    links,
    owner,
    pages,
    problems,
    report,
    signin,
    storm,
)

STATIC = Path(__file__).parent / "static"


def create_app() -> FastAPI:
    app = FastAPI(title="propflow", version="1", openapi_url="/api/openapi.json",
                  docs_url="/api/docs", redoc_url=None)
    problems.install(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (signin, api, events, pages, dashboard, report, owner, links, checkin,
                   storm):
        app.include_router(module.router)
    return app
