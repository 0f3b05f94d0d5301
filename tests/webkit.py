"""The web door for tests: an in-process client of create_app(), staff signed in or holding a
token, and a real uvicorn server on a free port (for Chromium).

    def test_x(web_client, demo):
        sign_in(web_client, demo["by_role"]["csr"])       # session cookie + X-CSRF-Token
        web_client.get("/api/...")
        web_client.get("/api/...", headers=bearer(staff_id))

Every demo account has the password propflow.demo.DEMO_PASSWORD.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from propflow.demo import DEMO_PASSWORD


def sign_in(client: TestClient, staff_id: int | str, *, password: str = DEMO_PASSWORD,
            csrf_header: bool = True) -> dict[str, Any]:
    """Sign in through POST /api/session; the client keeps the cookie and, unless
    csrf_header=False, sends the session's X-CSRF-Token on every later request."""
    response = client.post("/api/session", json={"login": str(staff_id), "password": password})
    assert response.status_code == 200, response.text
    me: dict[str, Any] = response.json()
    if csrf_header:
        client.headers["X-CSRF-Token"] = me["csrf_token"]
    return me


def sign_out(client: TestClient) -> None:
    client.cookies.clear()
    client.headers.pop("X-CSRF-Token", None)


def bearer(staff_id: int | str, *, name: str = "test") -> dict[str, str]:
    """Headers with a new API token of this staff member."""
    from propflow import accounts

    token = accounts.create_token(staff_id, name=name, actor="test")["token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def web_client(db: str) -> Iterator[TestClient]:
    """A client of the whole app on the test's database (ask for `demo` too for its staff).
    Redirects are not followed, so a test sees the 303 to /login."""
    from propflow.web.app import create_app

    with TestClient(create_app(), base_url="http://testserver",
                    follow_redirects=False) as client:
        yield client


@pytest.fixture
def live_web(db: str) -> Iterator[str]:
    """A real uvicorn server on a free port in this process (same database and clock as
    the test), yielding its base URL, e.g. http://127.0.0.1:40123."""
    from propflow.web import server

    web = server.WebServer(server.bind("127.0.0.1", 0)).start()
    try:
        yield web.url
    finally:
        web.stop()
