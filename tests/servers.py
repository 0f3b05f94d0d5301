"""Real local servers for channel tests: an aiosmtpd SMTP server and a JSON HTTP receiver.

Plain pytest fixtures; import them into a test module or conftest to use them.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(items: list[Any], lock: threading.Lock, n: int, timeout: float, what: str) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        with lock:
            if len(items) >= n:
                return list(items)
        if time.monotonic() >= deadline:
            raise AssertionError(f"expected {n} {what} within {timeout}s, got {len(items)}")
        time.sleep(0.01)


class SMTPServer:
    """Accepts any AUTH login listed in `.valid_logins`; `.data_response` overrides the DATA
    reply (e.g. "451 4.3.0 try later") to exercise failures."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []  # (MAIL FROM, RCPT TOs)
        self.logins: list[tuple[str, str]] = []
        self.valid_logins = {("propflow", "s3cret")}
        self.data_response: str | None = None
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_response:
            return self.data_response
        # SMTP wire format is CRLF; convert as a mail client would so text bodies compare as-is.
        raw = (envelope.original_content or envelope.content).replace(b"\r\n", b"\n")
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        with self._lock:
            self.messages.append(parsed)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = (auth_data.login.decode(), auth_data.password.decode())
        self.logins.append(login)
        if login not in self.valid_logins:
            return AuthResult(success=False, handled=False)  # aiosmtpd then answers 535
        return AuthResult(success=True, auth_data=auth_data)

    def wait_for(self, n: int, timeout: float = 5) -> list[EmailMessage]:
        return _wait(self.messages, self._lock, n, timeout, "messages")


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer()
    # AUTH over plain text is fine on loopback and lets tests cover the login path.
    controller = Controller(server, hostname=server.host, port=server.port,
                            authenticator=server.authenticate, auth_require_tls=False)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@dataclass
class ReceivedRequest:
    method: str
    path: str
    query: dict[str, str]  # last value wins; raw_query keeps the original encoding
    raw_query: str
    headers: dict[str, str]
    body: bytes
    json: Any  # None when the body is not JSON


class HTTPReceiver:
    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.requests: list[ReceivedRequest] = []
        self._default: tuple[int, Any] = (200, {"errcode": 0, "errmsg": "ok"})
        self._queue: deque[tuple[int, Any]] = deque()
        self._lock = threading.Lock()

    def respond_with(self, body: Any = None, status: int = 200) -> None:
        """Answer every request from now on with `body` (JSON, or str sent as-is)."""
        with self._lock:
            self._default = (status, body)

    def respond_once(self, *responses: tuple[int, Any] | dict[str, Any]) -> None:
        """Queue one-shot responses, as bodies (status 200) or (status, body), used in order
        before falling back to respond_with's."""
        with self._lock:
            for item in responses:
                self._queue.append(item if isinstance(item, tuple) else (200, item))

    def wait_for(self, n: int, timeout: float = 5) -> list[ReceivedRequest]:
        return _wait(self.requests, self._lock, n, timeout, "requests")

    def _record(self, request: ReceivedRequest) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(request)
            return self._queue.popleft() if self._queue else self._default


def _handler(receiver: HTTPReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            split = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = None
            status, answer = receiver._record(ReceivedRequest(
                method=self.command, path=split.path,
                query={k: v[-1] for k, v in parse_qs(split.query).items()},
                raw_query=split.query, headers=dict(self.headers.items()), body=body,
                json=parsed))
            if isinstance(answer, str):
                payload, ctype = answer.encode(), "text/plain; charset=utf-8"
            else:
                payload = json.dumps(answer, ensure_ascii=False).encode()
                ctype = "application/json; charset=utf-8"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _handle

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

    return Handler


@pytest.fixture
def http_receiver() -> Iterator[HTTPReceiver]:
    receiver = HTTPReceiver()
    server = receiver.server
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
