"""Who is asking: a signed session cookie (browsers), a bearer token (integrations), or a
one-tap link (one step, or one owner's case). Every route takes its Principal from here.

Contract for the routes:
- `api_principal` (FastAPI dependency): the Principal of a bearer token
  (`Authorization: Bearer pft_...`) or of a session cookie; none or a bad one -> Problem 401.
  With the cookie, a POST/PUT/PATCH/DELETE must carry the session's CSRF token in the
  `X-CSRF-Token` header (or a form field `csrf`) -> else 403; a bearer token needs none.
- `page_principal`: the same for pages, from the session cookie only; no session -> 303 to
  /login?next=<path> (an htmx request gets 401 with HX-Redirect); an unsafe method needs the
  form field `csrf` (or the header) -> else 403.
- `csrf_token(request) -> str`: the token to put in a form's hidden field `csrf`.
- `csrf_check` (dependency): 403 Problem when the form field `csrf` (or the X-CSRF-Token
  header) does not match; requests with a bearer token pass.
- `start_session(response, staff_id, *, step_id=None, case_id=None, max_age=...)` sets the
  cookie (a link session carries step_id/case_id and may open only that: see `check_scope`);
  `end_session(response)` removes it.
- Principal.staff_id is None only for an owner's link (owner pages).
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool

from core.settings import get_settings
from propflow.web.problems import Problem

COOKIE = "propflow_session"
ANON_COOKIE = "propflow_csrf"  # the sign-in form's token, before there is a session
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Principal:
    staff_id: int | None  # None: an owner through their link
    name: str
    via: Literal["session", "token", "link"]
    step_id: int | None = None  # a one-tap link opens this step alone
    case_id: int | None = None  # an owner's link: this case alone

    @property
    def limited(self) -> bool:
        return self.step_id is not None or self.case_id is not None


# --- the key --------------------------------------------------------------------------

def secret_key() -> str:
    """PROPFLOW_SECRET_KEY, or a key made once under PROPFLOW_HOME (replicas on other
    machines must share PROPFLOW_SECRET_KEY)."""
    settings = get_settings()
    if settings.secret_key:
        return settings.secret_key
    return _key_file(settings.home.resolve())


@lru_cache
def _key_file(home: Path) -> str:
    path = home / "secret_key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        tmp = home / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        tmp.write_text(secrets.token_urlsafe(48), encoding="utf-8")
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # atomic: two processes starting at once keep one key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text(encoding="utf-8").strip()


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key(), salt="propflow-session")


# --- sessions -------------------------------------------------------------------------

def start_session(response: Response, staff_id: int | None, *, step_id: int | None = None,
                  case_id: int | None = None, max_age: int = SESSION_SECONDS,
                  version: str | None = None, secure: bool = False) -> str:
    """Set the session cookie; returns its CSRF token. `version` (when the password was set)
    makes a password change end the sessions opened before it."""
    csrf = secrets.token_urlsafe(24)
    payload: dict[str, Any] = {"s": staff_id, "x": csrf, "m": max_age}
    if step_id is not None:
        payload["st"] = step_id
    if case_id is not None:
        payload["ca"] = case_id
    if version is not None:
        payload["v"] = version
    response.set_cookie(COOKIE, _signer().dumps(payload), max_age=max_age, path="/",
                        httponly=True, samesite="lax", secure=secure)
    return csrf


def end_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")


def session_of(request: Request) -> dict[str, Any] | None:
    """The signed session's payload, or None (none, tampered with, or expired)."""
    if hasattr(request.state, "propflow_session"):
        cached: dict[str, Any] | None = request.state.propflow_session
        return cached
    found = None
    raw = request.cookies.get(COOKIE)
    if raw:
        try:
            payload, signed_at = _signer().loads(raw, return_timestamp=True)
        except BadSignature:
            payload = None
        if isinstance(payload, dict) and time.time() - signed_at.timestamp() <= int(
                payload.get("m", SESSION_SECONDS)):
            found = payload
    request.state.propflow_session = found
    return found


def csrf_token(request: Request) -> str:
    """The token a form posts in its hidden field `csrf`: the session's, or before sign-in
    the sign-in form's own (set as a cookie by the page that shows the form)."""
    session = session_of(request)
    if session is not None:
        return str(session["x"])
    anon = request.cookies.get(ANON_COOKIE) or getattr(request.state, "new_anon_csrf", None)
    if not anon:
        anon = secrets.token_urlsafe(24)
        request.state.new_anon_csrf = anon
    return str(anon)


def keep_anon_csrf(request: Request, response: Response) -> None:
    """Set the sign-in form's token cookie when csrf_token made a new one for this page."""
    new = getattr(request.state, "new_anon_csrf", None)
    if new:
        response.set_cookie(ANON_COOKIE, new, max_age=SESSION_SECONDS, path="/",
                            httponly=True, samesite="lax")


async def _sent_token(request: Request) -> str:
    sent = request.headers.get(CSRF_HEADER, "")
    kind = request.headers.get("content-type", "")
    if not sent and (kind.startswith("application/x-www-form-urlencoded")
                     or kind.startswith("multipart/form-data")):
        form = await request.form()  # Starlette keeps it: the route reads the same form
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else ""
    return sent


def _refused_csrf() -> Problem:
    return Problem(403, "CSRF 校验失败 (CSRF check failed)",
                   f"{CSRF_FIELD}：缺少或不匹配的 CSRF 令牌，请刷新页面后重试；expected the "
                   f"form field `{CSRF_FIELD}` or header {CSRF_HEADER} of this session",
                   field=CSRF_FIELD, code="csrf")


async def csrf_check(request: Request) -> None:
    """For form posts (and JSON calls made with the cookie): the token must match the
    session's (before sign-in, the sign-in form's cookie). A bearer token needs none."""
    if _bearer(request) is not None or request.method not in UNSAFE:
        return
    expected = csrf_token(request) if (session_of(request) is not None
                                       or request.cookies.get(ANON_COOKIE)) else ""
    sent = await _sent_token(request)
    if not expected or not sent or not hmac.compare_digest(sent, expected):
        raise _refused_csrf()


# --- principals -----------------------------------------------------------------------

def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _unauthorized(detail: str, *, error: str = "") -> Problem:
    challenge = 'Bearer realm="propflow"' + (f', error="{error}"' if error else "")
    return Problem(401, "需要登录 (sign-in required)", detail, field="authorization",
                   code="unauthorized", headers={"WWW-Authenticate": challenge})


def _session_principal(session: dict[str, Any]) -> Principal | None:
    """The Principal of a valid session payload; None when its staff member has left or the
    password changed since."""
    staff_id, step_id, case_id = session.get("s"), session.get("st"), session.get("ca")
    via: Literal["session", "link"] = "link" if step_id or case_id else "session"
    if staff_id is None:
        return Principal(None, "业主 (owner)", "link", case_id=case_id) if case_id else None
    from models.db import unit_of_work
    from models.org import Staff
    from propflow.accounts import credential_version

    with unit_of_work(write=False) as db:
        person = db.get(Staff, int(staff_id))
        if person is None or not person.active:
            return None
        if "v" in session and credential_version(db, person.id) != session["v"]:
            return None
        return Principal(person.id, person.name, via, step_id=step_id, case_id=case_id)


async def session_principal(request: Request) -> Principal | None:
    """The session's Principal or None, for pages anyone may see (the sign-in page)."""
    return await _from_session(request)


async def _from_session(request: Request) -> Principal | None:
    session = session_of(request)
    if session is None:
        return None
    if not hasattr(request.state, "propflow_principal"):
        request.state.propflow_principal = await run_in_threadpool(_session_principal, session)
    found: Principal | None = request.state.propflow_principal
    return found


async def api_principal(request: Request) -> Principal:
    secret = _bearer(request)
    if secret is not None:
        from propflow.accounts import token_principal

        person = await run_in_threadpool(token_principal, secret) if secret else None
        if person is None:
            raise _unauthorized("authorization：令牌无效或已撤销；expected `Authorization: "
                                "Bearer <token>` from `propflow tokens create`",
                                error="invalid_token")
        return Principal(person.id, person.name, "token")
    principal = await _from_session(request)
    if principal is None:
        raise _unauthorized("authorization：未登录或会话已过期；expected a session (POST "
                            "/api/session) or `Authorization: Bearer <token>`")
    return await _staff_session(request, principal, "a staff session or token")


async def _staff_session(request: Request, principal: Principal, expected: str) -> Principal:
    """A session's Principal for staff routes: not an owner's link, and an unsafe method
    carries the session's CSRF token."""
    if principal.staff_id is None:
        raise Problem(403, "禁止访问 (forbidden)", f"业主链接只能打开业主页面；expected {expected}",
                      field="authorization", code="forbidden")
    await csrf_check(request)
    return principal


async def page_principal(request: Request) -> Principal:
    principal = await _from_session(request)
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        login = f"/login?next={quote(target, safe='')}"
        if request.headers.get("hx-request"):
            raise Problem(401, "需要登录 (sign-in required)", "会话已过期，请重新登录",
                          code="unauthorized", headers={"HX-Redirect": login})
        raise Problem(303, "需要登录 (sign-in required)", "请先登录 (sign in first)",
                      code="sign_in", headers={"Location": login})
    return await _staff_session(request, principal, "a staff session")


def check_scope(principal: Principal, *, step_id: int | None = None,
                case_id: int | None = None) -> None:
    """A link session opens its own step (or an owner's case) and nothing else: 403."""
    if principal.step_id is not None and step_id != principal.step_id:
        raise Problem(403, "禁止访问 (forbidden)", f"此链接只能打开步骤 {principal.step_id}；"
                      "expected that step, or sign in for the rest", field="step",
                      code="link_scope")
    if principal.case_id is not None and principal.step_id is None \
            and case_id != principal.case_id:
        raise Problem(403, "禁止访问 (forbidden)", "此链接只能打开它所属的工单；expected "
                      "that case", field="case", code="link_scope")


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
