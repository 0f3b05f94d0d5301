"""The web door inside `propflow serve`: uvicorn in a background thread on
PROPFLOW_WEB_HOST:PROPFLOW_WEB_PORT (0: none).

The socket is bound here, before uvicorn starts, so a port in use is refused at once with
a message naming PROPFLOW_WEB_PORT instead of a log line in a thread nobody reads.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time

import uvicorn

from core.errors import PropflowError
from core.settings import get_settings

log = logging.getLogger("propflow.web")
STARTUP_SECONDS = 20.0


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PropflowError(
                f"PROPFLOW_WEB_PORT：端口 {port} 已被占用（{host}:{port}），网页入口无法启动；"
                f"请换一个端口（如 PROPFLOW_WEB_PORT={port + 1}）或设为 0 不启动网页入口；"
                f"expected a free port", field="PROPFLOW_WEB_PORT", code="port_in_use") from None
        raise PropflowError(f"PROPFLOW_WEB_HOST：无法监听 {host}:{port}（{exc.strerror}）；"
                            "expected a local address such as 127.0.0.1 or 0.0.0.0",
                            field="PROPFLOW_WEB_HOST") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class WebServer:
    """uvicorn serving create_app() on an already bound socket, in a daemon thread."""

    def __init__(self, sock: socket.socket) -> None:
        from propflow.web.app import create_app

        self.sock = sock
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}"
        config = uvicorn.Config(create_app(), log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="propflow-web", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except Exception:  # the rest of `propflow serve` goes on; the log says why
            log.exception("web door stopped")

    def start(self) -> WebServer:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self.server.started and self.thread.is_alive():
            if time.monotonic() > deadline:
                raise PropflowError(f"网页入口 {self.url} 未在 {STARTUP_SECONDS:g} 秒内启动；"
                                    "expected uvicorn to start", field="PROPFLOW_WEB_PORT")
            time.sleep(0.02)
        if not self.thread.is_alive():
            raise PropflowError(f"网页入口 {self.url} 启动失败（见日志）；expected uvicorn to "
                                "start", field="PROPFLOW_WEB_PORT")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()


def start(host: str | None = None, port: int | None = None) -> WebServer | None:
    """Serve the web door; None when PROPFLOW_WEB_PORT is 0."""
    settings = get_settings()
    host = settings.web_host if host is None else host
    port = settings.web_port if port is None else port
    if port == 0:
        return None
    if not 0 < port < 65536:
        raise PropflowError(f"PROPFLOW_WEB_PORT：{port} 不是端口号；expected 1-65535, or 0 "
                            "for no web door", field="PROPFLOW_WEB_PORT")
    web = WebServer(bind(host, port)).start()
    print(f"网页入口 (web door): {web.url}", flush=True)
    return web
