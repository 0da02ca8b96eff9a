"""A local webhook receiver for alert delivery tests: records every JSON POST, and can be
switched to answer 503 (down) for as long as a test wants."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    received: list[dict[str, Any]]
    attempts: int
    down: bool
    lock: threading.Lock


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.attempts += 1
            down = self.server.down
            if not down:
                self.server.received.append(json.loads(body))
        status = 503 if down else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class WebhookReceiver:
    def __init__(self) -> None:
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.received, self.httpd.attempts, self.httpd.down = [], 0, False
        self.httpd.lock = threading.Lock()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    @property
    def received(self) -> list[dict[str, Any]]:
        return self.httpd.received

    @property
    def attempts(self) -> int:
        return self.httpd.attempts

    def set_down(self, down: bool) -> None:
        self.httpd.down = down

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
