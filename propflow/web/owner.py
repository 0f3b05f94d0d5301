"""Owners' answer pages, opened from the link in their message (no account): GET /o/{token}
shows their case in brief and the form; POST records the answer as the owner's own
(actions.decide_as_owner, channel owner_link) and wakes the run. A used or expired link, or
a step already settled, shows where things stand instead of the form.

Stable form fields (browser tests rely on them; the labels are zh-CN by default):
- every form: hidden `csrf` (this link's own form token), submit button `data-testid="submit"`.
- quote (报价确认) and owner_acceptance (验收): radio `accepted` with values "true"/"false"
  (ids `accepted-yes`/`accepted-no`), textarea `reason` (id `reason`; required when "false").
- callback (回访评分): radio `rating` with values "1".."5" (ids `rating-1`..`rating-5`),
  textarea `comment` (id `comment`).
- the page after an answer (or a used link): `data-testid="owner-state"`, with
  `data-testid="answer"` holding the answer recorded.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from core.errors import NotFound, PropflowError
from propflow import actions
from propflow.web import templating

router = APIRouter(include_in_schema=False)
# What an owner is told when an answer is refused: plain words, not the form's rule.
PLAIN = {"reason": "请填写原因（不接受时必填） (a reason is required when you say no)",
         "accepted": "请选择“接受”或“不接受” (choose yes or no)",
         "rating": "请选择 1–5 分 (choose a rating from 1 to 5)",
         "comment": "留言太长，请精简 (the comment is too long)",
         "csrf": "页面已失效，请重新打开消息中的链接 (open the link in your message again)"}
FIELDS = {"quote": ("accepted", "reason"), "owner_acceptance": ("accepted", "reason"),
          "callback": ("rating", "comment")}


def _page(request: Request, view: dict[str, Any], *, status: int = 200,
          error: str = "", values: dict[str, Any] | None = None) -> Response:
    name = "owner/answer.html" if view["answerable"] else "owner/state.html"
    if not view["answerable"] and status == 200 and view["link"] != "usable" \
            and not view.get("thanks"):
        status = 410  # used or expired: the state, not the form
    return templating.render(request, name, {"v": view, "error": error,
                                             "values": values or {}}, status=status,
                             headers={"Cache-Control": "no-store",
                                      "Referrer-Policy": "no-referrer"})


def _unknown(request: Request) -> Response:
    return templating.render(request, "links/gone.html", {"reason": "unknown", "owner": True},
                             status=404, headers={"Referrer-Policy": "no-referrer"})


@router.get("/o/{token}")
async def show(request: Request, token: str) -> Response:
    try:
        view = await run_in_threadpool(actions.owner_view, token)
    except NotFound:
        return _unknown(request)
    return _page(request, view)


@router.post("/o/{token}")
async def answer(request: Request, token: str) -> Response:
    try:
        view = await run_in_threadpool(actions.owner_view, token)
    except NotFound:
        return _unknown(request)
    form = await request.form()
    sent = {k: v for k, v in form.items() if isinstance(v, str)}
    values: dict[str, Any] = {k: sent[k] for k in FIELDS.get(view["step"], ()) if k in sent}
    if view["step"] == "callback":
        values["reached"] = True  # the owner answering is the owner reached
    if not view["answerable"]:
        return _page(request, view)
    try:
        await run_in_threadpool(actions.decide_as_owner, token, values,
                                form_token=sent.get("csrf", ""))
    except PropflowError as exc:
        from models.links import LinkGone

        if isinstance(exc, LinkGone):  # another tap got there first
            return _page(request, await run_in_threadpool(actions.owner_view, token))
        status = 403 if exc.code == "forbidden" else 409 if exc.code == "conflict" else 422
        view = await run_in_threadpool(actions.owner_view, token)
        return _page(request, view, status=status, values=sent,
                     error=PLAIN.get(exc.field or "", exc.message))
    view = await run_in_threadpool(actions.owner_view, token)
    return _page(request, view | {"thanks": True})
