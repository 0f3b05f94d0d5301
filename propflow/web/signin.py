"""Signing in and out: the /login page and /logout for browsers, /api/session for scripts
and single-page use. The checks (password, rate limit, audit) are propflow.accounts'."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from propflow import accounts
from propflow.web import auth
from propflow.web.auth import Principal, api_principal
from propflow.web.problems import Problem
from propflow.web.templating import lang_of, render

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only a path of this site: a sign-in link must not send people elsewhere."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def _sign_in(request: Request, login: str, password: str) -> accounts.SignedIn:
    """The signed-in staff member, or the Problem to answer (401, 429 with Retry-After)."""
    try:
        return await run_in_threadpool(accounts.sign_in, login, password,
                                       address=auth.client_address(request))
    except accounts.TooManyAttempts as exc:
        raise Problem(429, "登录过于频繁 (too many sign-in attempts)", exc.message,
                      field="login", code="too_many_attempts",
                      headers={"Retry-After": str(exc.retry_after)}) from None
    except accounts.SignInFailed as exc:
        raise Problem(401, "登录失败 (sign-in failed)", exc.message, field="password",
                      code="sign_in_failed") from None


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    principal = await auth.session_principal(request)  # signed in: the header says who
    response = render(request, "login.html", {"next": _safe_next(next), "login": "",
                                              "error": "", "principal": principal})
    auth.keep_anon_csrf(request, response)
    return response


@router.post("/login", include_in_schema=False, dependencies=[Depends(auth.csrf_check)])
async def login_post(request: Request, login: Annotated[str, Form(max_length=100)] = "",
                     password: Annotated[str, Form(max_length=200)] = "",
                     next: Annotated[str, Form(max_length=500)] = "/") -> Response:
    try:
        signed = await _sign_in(request, login, password)
    except Problem as problem:
        # The form again, with the reason beside it; the status stays the problem's.
        zh = lang_of(request) == "zh-CN"
        error = problem.detail.split("；")[0] if zh else problem.detail.split("；")[-1]
        if problem.status == 429:
            error = problem.detail if zh else (f"Too many failed sign-ins; try again in "
                                               f"{problem.headers['Retry-After']} s")
        response = render(request, "login.html", {"next": _safe_next(next), "login": login,
                                                  "error": error},
                          status=problem.status, headers=problem.headers)
        auth.keep_anon_csrf(request, response)
        return response
    done = RedirectResponse(_safe_next(next), status_code=303)
    auth.start_session(done, signed.staff_id, version=signed.version,
                       secure=_secure(request))
    done.delete_cookie(auth.ANON_COOKIE, path="/")
    return done


@router.post("/logout", include_in_schema=False, dependencies=[Depends(auth.csrf_check)])
def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    auth.end_session(response)
    return response


class SignInBody(BaseModel):
    login: str = Field(min_length=1, max_length=100,
                       description="staff id, or login name (propflow users set-password --login)")
    password: str = Field(min_length=1, max_length=200)


class Me(BaseModel):
    staff_id: int
    name: str
    login: str | None
    csrf_token: str = Field(description="send as header X-CSRF-Token on POST/PUT/PATCH/DELETE "
                                        "made with the session cookie")


@router.post("/api/session", response_model=Me, tags=["session"],
             responses={401: {"description": "wrong login or password"},
                        429: {"description": "too many failed sign-ins (Retry-After)"}})
async def api_sign_in(request: Request, response: Response, body: SignInBody) -> Me:
    """Sign in: sets the session cookie and says who you are."""
    signed = await _sign_in(request, body.login, body.password)
    csrf = auth.start_session(response, signed.staff_id, version=signed.version,
                              secure=_secure(request))
    return Me(staff_id=signed.staff_id, name=signed.name, login=signed.login, csrf_token=csrf)


@router.get("/api/session", response_model=Me, tags=["session"])
def api_whoami(request: Request,
               principal: Annotated[Principal, Depends(api_principal)]) -> Me:
    """Who you are (a session or a token)."""
    from models.accounts import login_of
    from models.db import unit_of_work

    assert principal.staff_id is not None  # api_principal refuses owners' links
    with unit_of_work(write=False) as session:
        login = login_of(session, principal.staff_id)
    return Me(staff_id=principal.staff_id, name=principal.name, login=login,
              csrf_token=auth.csrf_token(request) if principal.via != "token" else "")


@router.delete("/api/session", status_code=204, tags=["session"])
def api_sign_out(principal: Annotated[Principal, Depends(api_principal)]) -> Response:
    """Sign out: removes the session cookie (needs X-CSRF-Token)."""
    response = Response(status_code=204)
    auth.end_session(response)
    return response
