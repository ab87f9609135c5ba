"""A loopback HTTP proxy in front of Azurite's blob service that refuses chosen requests.

Everything else is forwarded to Azurite untouched (Shared Key signatures cover the path and the
headers, not the host, so they stay valid). A refused request gets the answer Storage gives a
principal without the right role (403 ``AuthorizationPermissionMismatch``), which the Storage
SDK does not retry: the app sees one real failed write, where the test wants it.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.azurite import Azurite

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"})
_REFUSAL = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationPermissionMismatch</Code>'
    b"<Message>This request is not authorized to perform this operation using this permission.</Message></Error>"
)


@dataclass
class _Rule:
    method: str
    path_suffix: str
    remaining: int
    with_header: str | None = None  # only requests carrying this header (e.g. If-Match: a conditional update)


class BlobFaults:
    """Refuse the next requests that match a rule; forward the rest. ``connection_string`` points
    the app's blob clients here (its queues stay on Azurite)."""

    def __init__(self, azurite: Azurite) -> None:
        self._azurite = azurite
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self.refused: list[str] = []  # "METHOD path" of each refused request
        self.seen: list[str] = []  # "METHOD path" of every request, refused or forwarded
        faults = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                faults._forward(self)

            def do_PUT(self) -> None:
                faults._forward(self)

            def do_POST(self) -> None:
                faults._forward(self)

            def do_DELETE(self) -> None:
                faults._forward(self)

            def do_HEAD(self) -> None:
                faults._forward(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def connection_string(self) -> str:
        port = self._server.server_address[1]
        return self._azurite.connection_string.replace(
            f"BlobEndpoint=http://127.0.0.1:{self._azurite.blob_port}/", f"BlobEndpoint=http://127.0.0.1:{port}/"
        )

    def refuse_next(self, method: str, path_suffix: str, times: int = 1, *, with_header: str | None = None) -> None:
        """Refuse the next ``times`` ``method`` requests whose path (no query) ends with ``path_suffix``
        (and, with ``with_header``, that carry that header)."""
        with self._lock:
            self._rules.append(_Rule(method.upper(), path_suffix, times, with_header))

    def _take(self, method: str, path: str, headers: Any) -> bool:
        with self._lock:
            for rule in self._rules:
                if rule.method == method and path.endswith(rule.path_suffix) and (
                    rule.with_header is None or headers.get(rule.with_header) is not None
                ):
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                    self.refused.append(f"{method} {path}")
                    return True
        return False

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        method = handler.command
        with self._lock:
            self.seen.append(f"{method} {handler.path.split('?')[0]}")
        if self._take(method, handler.path.split("?")[0], handler.headers):
            self._answer(handler, 403, {"Content-Type": "application/xml",
                                        "x-ms-error-code": "AuthorizationPermissionMismatch"}, _REFUSAL)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self._azurite.blob_port, timeout=60)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream.request(method, handler.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            kept = {k: v for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP | {"content-length"}}
            self._answer(handler, answer.status, kept, data, head_only=method == "HEAD",
                         length=answer.getheader("Content-Length"))
        finally:
            upstream.close()

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], data: bytes, *,
                head_only: bool = False, length: str | None = None) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", length if head_only and length else str(len(data)))
        handler.end_headers()
        if not head_only:
            handler.wfile.write(data)


@contextlib.contextmanager
def blob_faults(azurite: Azurite) -> Iterator[BlobFaults]:
    """A started proxy for the test's duration."""
    faults = BlobFaults(azurite)
    faults._thread.start()
    try:
        yield faults
    finally:
        faults._server.shutdown()
        faults._server.server_close()
        faults._thread.join()

