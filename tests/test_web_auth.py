"""Sign-in and its guards (issue 8, "Sign-in and permissions"): passwords hashed with argon2,
a signed HttpOnly SameSite session cookie, revocable bearer tokens, CSRF on form posts and
cookie JSON calls, failed sign-ins rate-limited and audited; the CLI's set-password and
tokens commands; the web door served by `propflow serve` on PROPFLOW_WEB_PORT."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, Request, Response
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from models import accounts
from models.db import unit_of_work
from models.outbox import AuditEvent
from propflow.cli import app as cli
from propflow.demo import DEMO_PASSWORD
from propflow.web import auth
from propflow.web.app import create_app
from propflow.web.auth import Principal
from tests.servekit import ROOT
from tests.webkit import bearer, sign_in

runner = CliRunner()


def audited(action: str) -> list[dict[str, Any]]:
    with unit_of_work(write=False) as session:
        return [dict(e.detail, actor=e.actor) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))]


def whoami(client: TestClient, **kwargs: Any) -> httpx.Response:
    return client.get("/api/session", **kwargs)


@pytest.fixture
def probe_client(db: str) -> TestClient:
    """The app with two probe routes: a page and a form post behind page_principal, and
    a link session maker (as one-tap links use start_session)."""
    app = create_app()

    @app.get("/_probe/page")
    def page(principal: Annotated[Principal, Depends(auth.page_principal)]) -> dict[str, Any]:
        return {"staff": principal.staff_id, "via": principal.via}

    @app.post("/_probe/form")
    def form(principal: Annotated[Principal, Depends(auth.page_principal)]) -> dict[str, Any]:
        return {"staff": principal.staff_id}

    @app.get("/_probe/link/{staff_id}/{step_id}")
    def link(staff_id: int, step_id: int, response: Response) -> dict[str, str]:
        auth.start_session(response, staff_id, step_id=step_id, max_age=600)
        return {}

    @app.get("/_probe/step/{step_id}")
    def step(step_id: int, principal: Annotated[Principal, Depends(auth.api_principal)],
             request: Request) -> dict[str, Any]:
        auth.check_scope(principal, step_id=step_id)
        return {"via": principal.via}

    return TestClient(app, follow_redirects=False)


# --- signing in -----------------------------------------------------------------------

def test_sign_in_with_the_right_password_and_not_with_a_wrong_one(web_client, demo):
    supervisor = demo["by_role"]["cs_supervisor"]
    wrong = web_client.post("/api/session", json={"login": str(supervisor),
                                                  "password": "not-the-password"})
    assert wrong.status_code == 401
    assert wrong.headers["content-type"].startswith("application/problem+json")
    assert wrong.json()["field"] == "password" and "密码不正确" in wrong.json()["detail"]
    assert "set-cookie" not in wrong.headers
    assert whoami(web_client).status_code == 401

    me = sign_in(web_client, supervisor)
    assert me["staff_id"] == supervisor and me["name"] == "陈静"
    assert me["login"] == "cs_supervisor"
    assert whoami(web_client).json()["staff_id"] == supervisor
    assert [a["actor"] for a in audited("signed_in")] == [f"staff:{supervisor}"]
    assert audited("sign_in_failed")[0]["login"] == str(supervisor)


def test_a_login_name_works_as_well_as_the_staff_id(web_client, demo):
    response = web_client.post("/api/session", json={"login": "technician2",
                                                     "password": DEMO_PASSWORD})
    assert response.status_code == 200
    second = [p["id"] for p in demo["staff"] if p["role"] == "technician"][1]
    assert response.json()["staff_id"] == second


def test_the_login_page_signs_in_with_an_httponly_samesite_cookie(web_client, demo):
    page = web_client.get("/login?next=/cases")
    assert page.status_code == 200
    assert '<meta name="viewport"' in page.text and 'lang="zh-CN"' in page.text
    assert "员工编号或登录名" in page.text
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    assert csrf
    signed = web_client.post("/login", data={"login": "cs_supervisor",
                                             "password": DEMO_PASSWORD,
                                             "next": "/cases", "csrf": csrf})
    assert signed.status_code == 303 and signed.headers["location"] == "/cases"
    cookie = next(c for c in signed.headers.get_list("set-cookie")
                  if c.startswith(f"{auth.COOKIE}="))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
    assert whoami(web_client).json()["name"] == "陈静"


def test_the_login_page_in_english_and_a_wrong_password_shown_on_it(web_client, demo):
    page = web_client.get("/login", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert 'lang="en"' in page.text and "Staff id or login name" in page.text
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    again = web_client.post("/login?lang=en", data={"login": "csr", "password": "nope-nope",
                                                    "csrf": csrf})
    assert again.status_code == 401 and "expected a staff id" in again.text
    assert whoami(web_client).status_code == 401


def test_next_never_leads_off_the_site(web_client, demo):
    page = web_client.get("/login")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    signed = web_client.post("/login", data={"login": "csr", "password": DEMO_PASSWORD,
                                             "next": "//evil.example/x", "csrf": csrf})
    assert signed.headers["location"] == "/"


def test_a_page_without_a_session_sends_to_the_login_page(probe_client, demo):
    response = probe_client.get("/_probe/page?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2F_probe%2Fpage%3Fx%3D1"


def test_a_tampered_or_foreign_cookie_is_refused(probe_client, demo):
    sign_in(probe_client, demo["by_role"]["csr"])
    assert probe_client.get("/_probe/page").status_code == 200
    good = probe_client.cookies[auth.COOKIE]
    payload, _, rest = good.partition(".")
    # Another staff id in the payload, the signature kept.
    import base64

    forged = base64.urlsafe_b64encode(json.dumps(
        {"s": demo["by_role"]["project_manager"], "x": "x", "m": 3600}).encode()
    ).decode().rstrip("=")
    for value in (f"{forged}.{rest}", good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
                  "garbage"):
        probe_client.cookies.set(auth.COOKIE, value)
        assert whoami(probe_client).status_code == 401
        assert probe_client.get("/_probe/page").status_code == 303
    # Signed with another key (another installation's cookie).
    from itsdangerous import URLSafeTimedSerializer

    other = URLSafeTimedSerializer("another-key", salt="propflow-session").dumps(
        {"s": demo["by_role"]["project_manager"], "x": "x", "m": 3600})
    probe_client.cookies.set(auth.COOKIE, other)
    assert whoami(probe_client).status_code == 401


def test_a_password_change_ends_the_sessions_opened_before_it(web_client, demo):
    csr = demo["by_role"]["csr"]
    sign_in(web_client, csr)
    result = runner.invoke(cli, ["users", "set-password", str(csr), "--password-stdin"],
                           input="a-new-password\n")
    assert result.exit_code == 0, result.output
    assert whoami(web_client).status_code == 401


def test_a_link_session_opens_its_own_step_only(probe_client, demo):
    tech = demo["by_role"]["technician"]
    assert probe_client.get(f"/_probe/link/{tech}/41").status_code == 200
    assert probe_client.get("/_probe/step/41").json() == {"via": "link"}
    refused = probe_client.get("/_probe/step/42")
    assert refused.status_code == 403 and refused.json()["field"] == "step"


# --- tokens ---------------------------------------------------------------------------

def test_a_token_works_until_revoked(web_client, demo):
    manager = demo["by_role"]["project_manager"]
    made = runner.invoke(cli, ["tokens", "create", str(manager), "--name", "erp"])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("pft_")
    headers = {"Authorization": f"Bearer {token}"}
    assert whoami(web_client, headers=headers).json()["staff_id"] == manager

    listed = json.loads(runner.invoke(cli, ["tokens", "list", "--as", str(manager),
                                            "--json"]).stdout)
    assert [(t["name"], t["revoked_at"]) for t in listed] == [("erp", None)]
    assert listed[0]["last_used_at"] is not None and "token" not in listed[0]
    with unit_of_work(write=False) as session:  # only a digest is kept
        stored = session.scalars(select(accounts.ApiToken)).one()
        assert token not in stored.token_hash and len(stored.token_hash) == 64

    revoked = runner.invoke(cli, ["tokens", "revoke", str(listed[0]["id"])])
    assert revoked.exit_code == 0, revoked.output
    refused = whoami(web_client, headers=headers)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert [a["actor"].startswith("cli:") for a in audited("token_revoked")] == [True]


def test_a_made_up_token_is_refused(web_client, demo):
    for value in ("Bearer pft_madeup", "Bearer ", "Basic dXNlcjpwYXNz"):
        assert whoami(web_client, headers={"Authorization": value}).status_code == 401


# --- rate limit -----------------------------------------------------------------------

def test_failed_sign_ins_are_rate_limited_per_login_and_audited(web_client, demo, clock):
    csr = demo["by_role"]["csr"]
    for _ in range(accounts.MAX_FAILURES_PER_LOGIN):
        assert web_client.post("/api/session", json={"login": str(csr),
                                                     "password": "guess-guess"}).status_code == 401
    blocked = web_client.post("/api/session", json={"login": str(csr),
                                                    "password": DEMO_PASSWORD})
    assert blocked.status_code == 429  # even the right password, while blocked
    assert blocked.headers["content-type"].startswith("application/problem+json")
    assert 0 < int(blocked.headers["retry-after"]) <= 300
    assert "set-cookie" not in blocked.headers
    assert len(audited("sign_in_failed")) == accounts.MAX_FAILURES_PER_LOGIN
    assert audited("sign_in_refused")[0]["login"] == str(csr)
    # Someone else at another desk is not held up by it.
    assert web_client.post("/api/session", json={"login": "cs_supervisor",
                                                  "password": DEMO_PASSWORD}).status_code == 200

    clock.advance(timedelta(minutes=5, seconds=1))
    sign_in(web_client, csr)


def test_failed_sign_ins_are_rate_limited_per_address(web_client, demo):
    for n in range(accounts.MAX_FAILURES_PER_ADDRESS):
        login = f"nobody{n}"
        assert web_client.post("/api/session", json={"login": login,
                                                     "password": "guess-guess"}).status_code == 401
    blocked = web_client.post("/api/session", json={"login": "csr", "password": DEMO_PASSWORD})
    assert blocked.status_code == 429 and "retry-after" in blocked.headers


def test_the_login_form_is_rate_limited_too(web_client, demo):
    page = web_client.get("/login")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    for _ in range(accounts.MAX_FAILURES_PER_LOGIN):
        web_client.post("/login", data={"login": "csr", "password": "x-wrong-x", "csrf": csrf})
    blocked = web_client.post("/login", data={"login": "csr", "password": DEMO_PASSWORD,
                                              "csrf": csrf})
    assert blocked.status_code == 429 and "秒后再试" in blocked.text
    assert whoami(web_client).status_code == 401


# --- CSRF -----------------------------------------------------------------------------

def test_a_form_post_without_the_right_csrf_token_is_refused_and_changes_nothing(
        probe_client, demo):
    sign_in(probe_client, demo["by_role"]["csr"], csrf_header=False)
    token = probe_client.get("/api/session").json()["csrf_token"]
    for data in ({}, {"csrf": "wrong"}):
        refused = probe_client.post("/logout", data=data)
        assert refused.status_code == 403 and refused.json()["field"] == "csrf"
        assert probe_client.post("/_probe/form", data=data).status_code == 403
        assert whoami(probe_client).status_code == 200  # still signed in
    assert probe_client.post("/_probe/form", data={"csrf": token}).status_code == 200
    out = probe_client.post("/logout", data={"csrf": token})
    assert out.status_code == 303
    assert whoami(probe_client).status_code == 401


def test_the_login_form_needs_its_csrf_token(web_client, demo):
    refused = web_client.post("/login", data={"login": "csr", "password": DEMO_PASSWORD})
    assert refused.status_code == 403
    assert whoami(web_client).status_code == 401
    with unit_of_work(write=False) as session:
        assert session.scalars(select(accounts.SignInAttempt)).all() == []


def test_json_calls_with_the_cookie_need_the_csrf_header_and_a_token_needs_none(
        web_client, demo):
    csr = demo["by_role"]["csr"]
    me = sign_in(web_client, csr, csrf_header=False)
    for headers in ({}, {"X-CSRF-Token": "wrong"}):
        refused = web_client.delete("/api/session", headers=headers)
        assert refused.status_code == 403
        assert whoami(web_client).status_code == 200
    out = web_client.delete("/api/session", headers={"X-CSRF-Token": me["csrf_token"]})
    assert out.status_code == 204
    assert whoami(web_client).status_code == 401
    # A bearer token is not sent by a browser on its own: no CSRF token needed.
    assert web_client.delete("/api/session", headers=bearer(csr)).status_code == 204


# --- the CLI --------------------------------------------------------------------------

def test_set_password_refuses_a_short_one_naming_the_rule_and_sets_a_good_one(web_client,
                                                                            demo):
    hr = demo["by_role"]["hr"]
    short = runner.invoke(cli, ["users", "set-password", str(hr), "--password-stdin", "--json"],
                          input="short\n")
    assert short.exit_code == 2
    error = json.loads(short.stderr)
    assert error["field"] == "password" and "至少 8 个字符" in error["message"]

    typed = runner.invoke(cli, ["users", "set-password", str(hr), "--login", "guoting"],
                          input="good-password-1\ngood-password-1\n")
    assert typed.exit_code == 0, typed.output
    assert web_client.post("/api/session", json={"login": "guoting",
                                                  "password": DEMO_PASSWORD}).status_code == 401
    sign_in(web_client, "guoting", password="good-password-1")
    with unit_of_work(write=False) as session:
        stored = session.get(accounts.Credential, hr)
        assert stored is not None and stored.password_hash.startswith("$argon2id$")
    assert audited("password_set")[-1]["actor"].startswith("cli:")

    mismatch = runner.invoke(cli, ["users", "set-password", str(hr)],
                             input="good-password-2\nother-password\n" * 3)
    assert mismatch.exit_code != 0
    sign_in(web_client, "guoting", password="good-password-1")  # unchanged


def test_demo_seed_prints_the_demo_logins(db, clock):
    result = runner.invoke(cli, ["demo", "seed"])
    assert result.exit_code == 0, result.output
    assert "cs_supervisor" in result.stdout and DEMO_PASSWORD in result.stdout


def test_a_cli_decision_records_the_operating_system_user_beside_as(demo, clock):
    import getpass

    from tests.test_cli_manager import open_case

    tech = demo["by_role"]["technician"]
    case = open_case("1-2-301", "accept#1", "accept", "technician", clock.now(), tech)
    result = runner.invoke(cli, ["steps", "decide", str(case["step"]), "--as", str(tech)])
    assert result.exit_code == 0, result.output
    decided = audited("decided")[-1]
    assert decided["actor"] == f"staff:{tech}" and decided["os_user"] == getpass.getuser()


# --- served ---------------------------------------------------------------------------

def test_the_live_web_fixture_serves_the_login_page(live_web, demo):
    response = httpx.get(f"{live_web}/login")
    assert response.status_code == 200 and "<form" in response.text


def test_a_taken_port_stops_serve_with_a_message_naming_the_variable(db):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = dict(os.environ, PROPFLOW_WEB_PORT=str(port), PROPFLOW_WEB_HOST="127.0.0.1")
        done = subprocess.run([sys.executable, "-m", "propflow.cli", "serve"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "PROPFLOW_WEB_PORT" in done.stderr and f"端口 {port} 已被占用" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.prefect
def test_propflow_serve_answers_on_the_web_port(service, demo):
    service.start()
    page = httpx.get(f"{service.web_url}/login", timeout=10)
    assert page.status_code == 200 and "员工编号或登录名" in page.text
    signed = httpx.post(f"{service.web_url}/api/session", timeout=10,
                        json={"login": "cs_supervisor", "password": DEMO_PASSWORD})
    assert signed.status_code == 200 and signed.json()["name"] == "陈静"
    assert f"网页入口 (web door): {service.web_url}" in service.log.read_text()


def test_signing_in_and_out_in_chromium_at_phone_and_desktop_size(any_page, live_web, demo):
    page = any_page
    page.goto(f"{live_web}/login?next=/login")
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1]  # nothing wider than the screen, on a phone too
    page.fill("#login", "cs_supervisor")
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    assert "登录名或密码不正确" in page.inner_text("[data-testid=error]")
    assert page.input_value("#login") == "cs_supervisor"  # kept for the next try

    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=who]")  # /login again, now signed in
    assert page.inner_text("[data-testid=who]") == "陈静"
    cookie = next(c for c in page.context.cookies() if c["name"] == auth.COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.evaluate("() => document.cookie").find(auth.COOKIE) == -1  # not for scripts

    page.click("header form[action='/logout'] button")
    page.wait_for_url(f"{live_web}/login")
    assert not [c for c in page.context.cookies() if c["name"] == auth.COOKIE]
