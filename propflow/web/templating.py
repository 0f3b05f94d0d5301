"""Server-rendered pages: one Jinja2 environment for every page template, the page language
(zh-CN by default; `?lang=en`, a `lang` cookie or an English Accept-Language give en) and the
names people read (core.labels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from core import labels

TEMPLATES = Path(__file__).parent / "templates"
LANGS = ("zh-CN", "en")

templates = Jinja2Templates(directory=TEMPLATES)
templates.env.globals.update(
    role_label=labels.role, procedure_label=labels.procedure, step_label=labels.step,
    priority_label=lambda key, lang: labels.label(labels.PRIORITIES, key, lang),
)


def lang_of(request: Request) -> str:
    asked = request.query_params.get("lang") or request.cookies.get("lang") or ""
    if asked in LANGS:
        return asked
    if asked.lower().startswith("en"):
        return "en"
    accept = request.headers.get("accept-language", "").lower()
    first = accept.split(",")[0].strip()
    return "en" if first.startswith("en") else "zh-CN"


def csrf_of(request: Request) -> str:
    """The token a page's forms post in their hidden field `csrf` (propflow.web.auth)."""
    from propflow.web import auth  # auth renders nothing; imported late all the same

    return auth.csrf_token(request)


def render(request: Request, name: str, context: dict[str, Any] | None = None, *,
           status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    lang = lang_of(request)

    def t(zh: str, en: str) -> str:
        return zh if lang == "zh-CN" else en

    ctx = {"lang": lang, "t": t, "csrf": csrf_of(request), **(context or {})}
    response = templates.TemplateResponse(request, name, ctx, status_code=status,
                                          headers=headers)
    if request.query_params.get("lang") in LANGS:  # the choice sticks for the next pages
        response.set_cookie("lang", lang, max_age=365 * 86400, samesite="lax", httponly=True)
    return response
