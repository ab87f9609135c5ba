"""The Functions host's HTTP front end, on loopback: real HTTP requests reach the app's HTTP functions.

Only what a caller from outside (Azure OpenAI delivering a webhook, a person with curl) needs:
``/{routePrefix}/{route}`` (``/api/...``), the function key checked as the host checks it for
``authLevel: function`` (``code`` query parameter or ``x-functions-key`` header) unless told not to
(``func start`` checks no key), the headers, the query string and the body passed on to be handed
to the worker as the host hands them; the worker's answer goes back as it came (status, headers,
body). Every answer of its own (no key, no such route, a function that raised) is JSON, like the
app's.

It serves anything with an ``http(method, route, body=, headers=, query_string=)`` method: the
tests' host stand-in (tests/support/host.py) or the development host (scripts/dev_host.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

import azure.functions as func

from tests.support.host import host_query

FUNCTION_KEY = "test-function-key-0123456789"  # the host's default key, as `func start` has its own
DEFAULT_ROUTE_PREFIX = "api"  # host.json's extensions.http.routePrefix when it says nothing
log = logging.getLogger(__name__)


class HttpAnswer(Protocol):
    @property
    def response(self) -> func.HttpResponse: ...

    @property
    def error(self) -> Exception | None: ...  # the function's exception, as the worker reported it


class HttpFunctions(Protocol):
    """Invokes the HTTP function whose route (after the prefix) and method match; LookupError if none."""

    def http(self, method: str, route: str, *, body: bytes, headers: dict[str, str],
             query_string: str) -> HttpAnswer: ...


@contextlib.contextmanager
def serve_http(functions: HttpFunctions, *, port: int = 0, function_key: str | None = FUNCTION_KEY,
               route_prefix: str = DEFAULT_ROUTE_PREFIX) -> Iterator[str]:
    """Serve ``functions`` on 127.0.0.1:``port`` (0: a free one); yields the base URL
    (``http://127.0.0.1:{port}``). ``function_key`` None: no key is asked for. OSError when the
    port cannot be had."""
    prefix = f"/{route_prefix.strip('/')}/" if route_prefix.strip("/") else "/"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures
            pass

        def do_GET(self) -> None:
            self._invoke("GET")

        def do_POST(self) -> None:
            self._invoke("POST")

        def do_PUT(self) -> None:
            self._invoke("PUT")

        def do_PATCH(self) -> None:
            self._invoke("PATCH")

        def do_DELETE(self) -> None:
            self._invoke("DELETE")

        def do_HEAD(self) -> None:
            self._invoke("HEAD")

        def do_OPTIONS(self) -> None:
            self._invoke("OPTIONS")

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """What the standard library would answer as an HTML page (a malformed request, a method
            it has no handler for) is JSON here too, as every answer of the app is."""
            self.close_connection = True
            self._error(code, "bad_request" if code < 500 else "server_error", message or explain or "refused")

        def _invoke(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = host_query(parts.query)
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            given = (query.get("code"), self.headers.get("x-functions-key"))
            if function_key is not None and function_key not in given:
                self._error(401, "unauthorized", "a function key is required: the code query parameter or the "
                                                 "x-functions-key header")
                return
            if not parts.path.startswith(prefix):
                self._error(404, "not_found", f"no function answers {method} {parts.path}")
                return
            headers: dict[str, str] = {}
            for name, value in self.headers.items():  # a header sent twice: its values joined, as the host reads it
                key = name.lower()
                headers[key] = f"{headers[key]},{value}" if key in headers else value
            try:
                call = functions.http(method, parts.path[len(prefix):], body=body, headers=headers,
                                      query_string=parts.query)
            except LookupError:
                self._error(404, "not_found", f"no function answers {method} {parts.path}")
                return
            if call.error is not None:  # the host logs it and answers 500; the app's own wrapper makes this rare
                log.error("the function for %s %s failed: %s", method, parts.path, call.error)
                self._error(500, "internal_error", "the function failed; see the host's log")
                return
            response = call.response
            self._answer(response.status_code, response.get_body(), dict(response.headers))

        def _error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"error": {"code": code, "message": message}}).encode()
            self._answer(status, body, {"Content-Type": "application/json; charset=utf-8"})

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="functions-http-front", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
