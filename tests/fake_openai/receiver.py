"""A webhook receiver on loopback for tests: records what arrives, answers the statuses it is given."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import Any

ROUTE = "/api/webhooks/azure-openai"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class WebhookReceiver:
    """Serves ``POST`` on loopback until :meth:`close`. ``threaded=False`` takes one request at a
    time; ``on_receive`` runs inside the request, before it is answered."""

    def __init__(self, *, threaded: bool = True, on_receive: Callable[[Received], None] | None = None) -> None:
        self.received: list[Received] = []
        self.statuses: list[int] = []  # answered in turn; 200 once used up
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                got = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                if on_receive is not None:
                    on_receive(got)
                with receiver._changed:
                    receiver.received.append(got)
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver._changed.notify_all()
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

        server_class = ThreadingHTTPServer if threaded else HTTPServer
        self._server = server_class(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.url = f"{self.base_url}{ROUTE}?code=k"  # a function key, as the app's URL carries one

    def wait(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.received) >= count, timeout), self.received
            return list(self.received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
