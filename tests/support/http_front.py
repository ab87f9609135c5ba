"""The Functions host's HTTP front end, on loopback: real HTTP requests reach the app's HTTP functions.

Only what a caller from outside (Azure OpenAI delivering a webhook) needs: ``/api/{route}``,
the function key checked as the host checks it for ``authLevel: function`` (``code`` query
parameter or ``x-functions-key`` header), the headers, the query string and the body passed to
the host stand-in, which hands them to the worker as the host does; the worker's answer goes back
as it came (status, headers, body).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.support.host import FunctionsHost, host_query, route_prefix

FUNCTION_KEY = "test-function-key-0123456789"  # the host's default key, as `func start` has its own


@contextlib.contextmanager
def serve_http(host: FunctionsHost) -> Iterator[str]:
    """Serve ``host``'s HTTP functions; yields the base URL (``http://127.0.0.1:{port}``)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures
            pass

        def do_POST(self) -> None:
            self._invoke("POST")

        def do_GET(self) -> None:
            self._invoke("GET")

        def _invoke(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = host_query(parts.query)
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            if FUNCTION_KEY not in (query.get("code"), self.headers.get("x-functions-key")):
                self._answer(401, b"", {})
                return
            prefix = f"/{route_prefix()}/"
            if not parts.path.startswith(prefix):
                self._answer(404, b"", {})
                return
            headers: dict[str, str] = {}
            for name, value in self.headers.items():  # a header sent twice: its values joined, as the host reads it
                key = name.lower()
                headers[key] = f"{headers[key]},{value}" if key in headers else value
            try:
                call = host.http(method, parts.path[len(prefix):], body=body, headers=headers,
                                 query_string=parts.query)
            except LookupError:
                self._answer(404, b"", {})
                return
            response = call.response
            self._answer(response.status_code, response.get_body(), dict(response.headers))

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="functions-http-front", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
