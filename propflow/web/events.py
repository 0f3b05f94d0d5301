"""Live updates: GET /api/events, server-sent events of the audit trail.

Each connection reads the database for audit rows newer than the last one it sent (the
browser's Last-Event-ID on a reconnect), about once a second; so whichever replica a browser
reaches, it hears what every replica and every flow run wrote. Only cases the member of staff
may see are sent; a one-tap link hears its own step's case alone.

Every message is `event: update` with the audit row's id and a small JSON body (case number,
action, step key): pages listen with htmx's SSE extension (hx-trigger="sse:update") and
fetch their own fragment again, so no page text travels over this stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import false, func, select
from starlette.concurrency import run_in_threadpool

from models import scope
from models.cases import Case, Step
from models.db import unit_of_work
from models.org import Staff
from models.outbox import AuditEvent
from propflow.web import auth
from propflow.web.auth import Principal

router = APIRouter()

POLL_SECONDS = 1.0
# A stream ends after this long and the browser reconnects with Last-Event-ID: a server
# shutting down or a replica leaving never waits on a browser, and nothing is lost.
STREAM_SECONDS = 55.0
KEEPALIVE_SECONDS = 15.0
BATCH = 200


def last_id() -> int:
    """Where a page rendered now starts listening: events after it are news to it."""
    with unit_of_work(write=False) as session:
        return int(session.scalar(select(func.max(AuditEvent.id))) or 0)


def newer(principal: Principal, after: int, case: str | None = None) -> list[dict[str, Any]]:
    """Audit rows after `after` on cases this principal may see (one case if given)."""
    with unit_of_work(write=False) as session:
        query = (select(AuditEvent.id, AuditEvent.action, AuditEvent.detail, Case.number)
                 .join(Case, Case.id == AuditEvent.case_id)
                 .where(AuditEvent.id > after).order_by(AuditEvent.id).limit(BATCH))
        if principal.step_id is not None:  # a one-tap link: its step's case alone
            query = query.where(Case.id == select(Step.case_id).where(
                Step.id == principal.step_id).scalar_subquery())
        elif principal.case_id is not None:
            query = query.where(Case.id == principal.case_id)
        else:
            person = session.get(Staff, principal.staff_id)
            query = query.where(scope.cases_where(session, person) if person else false())
        if case:
            query = query.where(Case.number == case)
        rows = session.execute(query).all()
        # Without a match the cursor still moves past what was read, so a busy company's
        # other communities are not read again each second.
        seen = session.scalar(select(func.max(AuditEvent.id)).where(AuditEvent.id > after)) \
            if len(rows) < BATCH else None
    out = [{"id": r.id, "case": r.number, "action": r.action,
            "step": (r.detail or {}).get("step")} for r in rows]
    if seen and (not out or seen > out[-1]["id"]):
        out.append({"id": int(seen), "skip": True})
    return out


def _message(row: dict[str, Any]) -> str:
    if row.get("skip"):  # moves the browser's Last-Event-ID without waking any page
        return f"id: {row['id']}\nevent: cursor\ndata: \n\n"
    data = json.dumps({k: row[k] for k in ("case", "action", "step")}, ensure_ascii=False)
    return f"id: {row['id']}\nevent: update\ndata: {data}\n\n"


def _start(request: Request, after: int | None) -> int:
    header = request.headers.get("last-event-id", "")
    if header.isdigit():
        return int(header)
    return after if after is not None else last_id()


async def stream(request: Request, principal: Principal, after: int,
                 case: str | None) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    started = quiet_since = loop.time()
    yield f"retry: {int(POLL_SECONDS * 1000)}\n\n"
    while loop.time() - started < STREAM_SECONDS:
        if await request.is_disconnected():
            return
        rows = await run_in_threadpool(newer, principal, after, case)
        for row in rows:
            after = row["id"]
            yield _message(row)
        if rows:
            quiet_since = loop.time()
        elif loop.time() - quiet_since > KEEPALIVE_SECONDS:
            quiet_since = loop.time()
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_SECONDS)


@router.get("/api/events", include_in_schema=False)
async def events(
    request: Request, principal: Annotated[Principal, Depends(auth.api_principal)],
    after: Annotated[int | None, Query(ge=0, le=2**62,
                                       description="audit id the page was rendered at")] = None,
    case: Annotated[str | None, Query(max_length=40, description="one case number")] = None,
) -> StreamingResponse:
    start = await run_in_threadpool(_start, request, after)
    return StreamingResponse(stream(request, principal, start, case),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
