"""A loopback stand-in for an Event Grid topic (Event Grid has no emulator): what the SDK sends, checked.

``EventGridReceiver`` serves HTTPS on 127.0.0.1 with a throwaway self-signed certificate (the SDK
signs with a bearer token, which azure-core sends only over https; the app's client trusts the
certificate through ``REQUESTS_CA_BUNDLE``). It accepts what a topic with the CloudEvents 1.0
input schema accepts: ``POST /api/events?api-version=…`` with ``Authorization: Bearer`` (a token for
Event Grid) and ``content-type: application/cloudevents-batch+json; charset=utf-8``, a JSON array of
CloudEvents; anything else is refused with the status a topic answers (401, 400, 415), and the
refusal is kept in ``refused``. While ``failing`` is set, every good request is answered 503.

It also serves the App Service managed identity endpoint on plain HTTP (``identity_endpoint``,
as App Service does on loopback): with ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` pointing at it,
the app's ``DefaultAzureCredential`` gets its Event Grid token here, as the app's identity would in Azure.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.azurite_oauth import self_signed_certificate

EVENT_GRID_RESOURCE = "https://eventgrid.azure.net"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json; charset=utf-8"


@dataclass
class Delivery:
    """One request the topic took."""

    headers: dict[str, str]
    query: dict[str, list[str]]
    events: list[dict[str, Any]]


@dataclass
class _State:
    identity_header: str = field(default_factory=lambda: secrets.token_hex(8))
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    taken: list[Delivery] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    failed: int = 0  # requests answered 503 on purpose
    failing: bool = False
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Topic(BaseHTTPRequestHandler):
    state: _State

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, status: int, why: str) -> None:
        with self.state.lock:
            self.state.refused.append((status, why))
        self._answer(status, {"error": {"code": "Refused", "message": why}})

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        checked = self._check(parts.path, parse_qs(parts.query), body)
        if isinstance(checked, tuple):
            self._refuse(*checked)
            return
        with self.state.lock:
            failing = self.state.failing
            if failing:
                self.state.failed += 1
            else:
                self.state.taken.append(Delivery(dict(self.headers.items()), parse_qs(parts.query), checked))
        if failing:
            self._answer(503, {"error": {"code": "ServiceUnavailable", "message": "try again"}})
        else:
            self._answer(200)

    def _check(self, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, str] | list[dict[str, Any]]:
        """The events, or the status and reason a topic would refuse the request with."""
        problem: tuple[int, str] | None = None
        if path != "/api/events":
            problem = (404, f"no route {path}")
        elif not query.get("api-version"):
            problem = (400, "no api-version")
        elif self.headers.get("authorization") != f"Bearer {self.state.token}":
            problem = (401, "no bearer token for Event Grid from the identity endpoint")
        elif self.headers.get("aeg-sas-key") or self.headers.get("aeg-sas-token"):
            problem = (400, "a key was sent; the app must sign with its identity only")
        elif self.headers.get("content-type") != BATCH_CONTENT_TYPE:
            problem = (415, f"content type {self.headers.get('content-type')!r}")
        if problem:
            return problem
        try:
            events = json.loads(body)
        except ValueError:
            return 400, "the body is not JSON"
        if not isinstance(events, list) or not events or not all(isinstance(e, dict) for e in events):
            return 400, "the body is not a JSON array of events"
        for event in events:
            missing = {"specversion", "id", "source", "type"} - set(event)
            if missing or event.get("specversion") != "1.0":
                return 400, f"not a CloudEvent 1.0: missing {sorted(missing)}"
        return events


class _Identity(BaseHTTPRequestHandler):
    """App Service's managed identity endpoint (api-version 2019-08-01)."""

    state: _State

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        with self.state.lock:
            self.state.token_requests.append(query)
        if self.headers.get("x-identity-header") != self.state.identity_header:
            self.send_response(401)
            self.end_headers()
            return
        resource = (query.get("resource") or [""])[0]
        token = self.state.token if resource.rstrip("/") == EVENT_GRID_RESOURCE else "not-for-event-grid"
        data = json.dumps({"access_token": token, "expires_on": str(int(time.time()) + 3600),
                           "resource": resource, "token_type": "Bearer"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class EventGridReceiver:
    def __init__(self, directory: Path) -> None:
        self.certificate, key = self_signed_certificate(directory)
        self.state = _State()
        topic = type("Topic", (_Topic,), {"state": self.state})
        identity = type("Identity", (_Identity,), {"state": self.state})
        self._topic = ThreadingHTTPServer(("127.0.0.1", 0), topic)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.certificate), str(key))
        self._topic.socket = context.wrap_socket(self._topic.socket, server_side=True)
        self._identity = ThreadingHTTPServer(("127.0.0.1", 0), identity)
        self._threads = [threading.Thread(target=server.serve_forever, daemon=True)
                         for server in (self._topic, self._identity)]
        for thread in self._threads:
            thread.start()

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self._topic.server_address[1]}/api/events"

    @property
    def identity_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._identity.server_address[1]}/msi/token"

    def environment(self) -> dict[str, str]:
        """The settings that point the app at this topic, with its identity from this endpoint."""
        return {
            "ARTIFACTS_EVENT_GRID_ENDPOINT": self.endpoint,
            "REQUESTS_CA_BUNDLE": str(self.certificate),
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.state.identity_header,
        }

    def fail(self, failing: bool = True) -> None:
        """Answer every good request 503 (an outage), or stop doing so."""
        with self.state.lock:
            self.state.failing = failing

    @property
    def events(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [event for delivery in self.state.taken for event in delivery.events]

    @property
    def deliveries(self) -> list[Delivery]:
        with self.state.lock:
            return list(self.state.taken)

    @property
    def refused(self) -> list[tuple[int, str]]:
        with self.state.lock:
            return list(self.state.refused)

    @property
    def failed(self) -> int:
        with self.state.lock:
            return self.state.failed

    def stop(self) -> None:
        for server in (self._topic, self._identity):
            server.shutdown()
            server.server_close()
