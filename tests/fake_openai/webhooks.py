"""Webhooks as Azure OpenAI sends them: the registered endpoints, the events, the signature.

Wire format, from the public documentation:

- Registration (Azure, learn.microsoft.com "Azure OpenAI webhooks"): ``POST
  {endpoint}/openai/v1/dashboard/webhook_endpoints`` with ``name``, ``url`` and ``event_types``,
  no ``api-version``; the answer is the endpoint (``"object": "webhook.endpoint"``) with its
  ``signing_secret``, shown only there, and a ``signing_secret_hint`` (``whsec_...8s8=``). List is
  ``GET`` on the same path, update is ``POST .../{id}``, delete is ``DELETE .../{id}``. Azure
  documents neither the list's nor the delete's answer: those follow OpenAI's ``/webhook_endpoints``
  reference (a cursor page, newest first, ``limit`` 1-100 default 20, ``after``; and
  ``{"id", "object": "webhook_endpoint.deleted", "deleted": true}``). OpenAI's own objects say
  ``"object": "webhook_endpoint"``; the fake answers Azure's documented ``webhook.endpoint``.
- Events (OpenAI's webhook event reference): ``{"id": "evt_…", "object": "event", "type":
  "response.completed", "created_at": <when the response ended>, "data": {"id": "resp_…"}}``.
- Signature (Standard Webhooks): headers ``webhook-id`` (one per message, the same on every retry),
  ``webhook-timestamp`` (Unix seconds of the attempt) and ``webhook-signature: v1,<base64 of
  HMAC-SHA256 over "{id}.{timestamp}.{body}">``, keyed with the base64-decoded part of the
  ``whsec_`` secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from tests.fake_openai.errors import FakeApiError, invalid_request, object_not_found
from tests.fake_openai.paging import cursor_page, requested_limit

# What a background response can end with, one event type each.
RESPONSE_EVENT_TYPES = ("response.completed", "response.failed", "response.cancelled", "response.incomplete")
# Every type Azure's webhook events reference lists: registration refuses any other.
EVENT_TYPES = frozenset(
    {
        *RESPONSE_EVENT_TYPES,
        "batch.completed",
        "batch.failed",
        "batch.cancelled",
        "batch.expired",
        "fine_tuning.job.succeeded",
        "fine_tuning.job.failed",
        "fine_tuning.job.cancelled",
        "realtime.call.incoming",
    }
)
ENDPOINT_OBJECT = "webhook.endpoint"  # Azure's documented value (OpenAI's API says "webhook_endpoint")
SECRET_PREFIX = "whsec_"
USER_AGENT = "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"  # as Azure's docs show a delivery
MAX_NAME_LENGTH = 256
MAX_URL_LENGTH = 2048
DEFAULT_LIST_LIMIT = 20
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_CREATE_FIELDS = frozenset({"name", "url", "event_types"})


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode("ascii")


def secret_hint(secret: str) -> str:
    """The masked form Azure lists: ``whsec_...`` and the secret's last four characters."""
    return f"{SECRET_PREFIX}...{secret[-4:]}"


def sign(secret: str, webhook_id: str, timestamp: int | str, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def new_webhook_id() -> str:
    return "wh_" + uuid.uuid4().hex


def event_body(
    event_type: str, response_id: str, *, created_at: int | None = None, event_id: str | None = None
) -> bytes:
    """The JSON body of a response event, exactly as it is signed and sent."""
    event = {
        "id": event_id or "evt_" + uuid.uuid4().hex,
        "object": "event",
        "type": event_type,
        "created_at": int(time.time()) if created_at is None else created_at,
        "data": {"id": response_id},
    }
    return json.dumps(event, separators=(",", ":")).encode("utf-8")


def signed_headers(secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header of one delivery attempt."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }


@dataclass
class WebhookEndpoint:
    endpoint_id: str
    name: str
    url: str
    event_types: list[str]
    secret: str
    created_at: int

    def view(self, *, with_secret: bool = False) -> dict[str, Any]:
        """The endpoint as the API answers it; the secret only in the create answer."""
        answer: dict[str, Any] = {
            "id": self.endpoint_id,
            "object": ENDPOINT_OBJECT,
            "created_at": self.created_at,
            "event_types": list(self.event_types),
            "name": self.name,
            "signing_secret_hint": secret_hint(self.secret),
            "url": self.url,
        }
        if with_secret:
            answer["signing_secret"] = self.secret
        return answer


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise invalid_request(f"'name' must be a string of 1 to {MAX_NAME_LENGTH} characters.", "name")
    return name


def _check_url(url: object) -> str:
    """An https URL; plain http only to loopback, since the tests' receivers are there."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise invalid_request(f"'url' must be a URL of at most {MAX_URL_LENGTH} characters.", "url")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise invalid_request("'url' has an invalid port.", "url") from None
    if not parts.hostname or parts.scheme not in ("http", "https"):
        raise invalid_request("'url' must be an absolute https URL.", "url")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        raise invalid_request("'url' must use https.", "url")
    return url


def _check_event_types(event_types: object) -> list[str]:
    if not isinstance(event_types, list) or not event_types:
        raise invalid_request("'event_types' must be a non-empty list of event types.", "event_types")
    unknown = [t for t in event_types if not isinstance(t, str) or t not in EVENT_TYPES]
    if unknown:
        raise invalid_request(
            f"Invalid event type {unknown[0]!r}; supported: {', '.join(sorted(EVENT_TYPES))}.", "event_types"
        )
    return list(dict.fromkeys(event_types))  # a type named twice is one subscription


def _check_fields(body: dict[str, Any], required: bool) -> None:
    unknown = sorted(set(body) - _CREATE_FIELDS)
    if unknown:
        raise invalid_request(f"Unrecognized request argument supplied: {unknown[0]}", unknown[0], "unknown_parameter")
    if required:
        missing = sorted(_CREATE_FIELDS - set(body))
        if missing:
            raise invalid_request(
                f"Missing required parameter: '{missing[0]}'.", missing[0], "missing_required_parameter"
            )


def _endpoint_not_found(endpoint_id: str) -> FakeApiError:
    return object_not_found(f"Webhook endpoint with id '{endpoint_id}' not found.")


class EndpointRegistry:
    """The webhook endpoints registered on the fake resource; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[str, WebhookEndpoint] = {}  # insertion order is creation order

    def create(self, body: dict[str, Any]) -> WebhookEndpoint:
        _check_fields(body, required=True)
        endpoint = WebhookEndpoint(
            endpoint_id="we_" + uuid.uuid4().hex,  # neither Azure nor OpenAI documents the prefix
            name=_check_name(body["name"]),
            url=_check_url(body["url"]),
            event_types=_check_event_types(body["event_types"]),
            secret=new_secret(),
            created_at=int(time.time()),
        )
        with self._lock:
            self._endpoints[endpoint.endpoint_id] = endpoint
        return endpoint

    def update(self, endpoint_id: str, body: dict[str, Any]) -> WebhookEndpoint:
        """Azure's documented update: name, url and event types; never the secret."""
        _check_fields(body, required=False)
        changes: dict[str, Any] = {}
        if "name" in body:
            changes["name"] = _check_name(body["name"])
        if "url" in body:
            changes["url"] = _check_url(body["url"])
        if "event_types" in body:
            changes["event_types"] = _check_event_types(body["event_types"])
        with self._lock:
            endpoint = self._endpoints.get(endpoint_id)
            if endpoint is None:
                raise _endpoint_not_found(endpoint_id)
            for name, value in changes.items():
                setattr(endpoint, name, value)
            return endpoint

    def url_of(self, endpoint_id: str) -> str | None:
        """The endpoint's URL as registered now; None once it is deleted."""
        with self._lock:
            endpoint = self._endpoints.get(endpoint_id)
            return None if endpoint is None else endpoint.url

    def get(self, endpoint_id: str) -> WebhookEndpoint:
        with self._lock:
            endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None:
            raise _endpoint_not_found(endpoint_id)
        return endpoint

    def delete(self, endpoint_id: str) -> dict[str, Any]:
        with self._lock:
            if self._endpoints.pop(endpoint_id, None) is None:
                raise _endpoint_not_found(endpoint_id)
        return {"id": endpoint_id, "object": "webhook_endpoint.deleted", "deleted": True}

    def list_page(self, query: dict[str, str]) -> dict[str, Any]:
        limit = requested_limit(query) or DEFAULT_LIST_LIMIT
        with self._lock:
            newest_first = list(reversed(self._endpoints.values()))
        return cursor_page(
            newest_first, lambda e: e.endpoint_id, lambda e: e.view(), after=query.get("after"), limit=limit,
            unknown_cursor="No webhook endpoint with id '{after}'.",
        )

    def subscribed(self, event_type: str) -> list[WebhookEndpoint]:
        """Copies of the endpoints that want ``event_type``, as they are now."""
        with self._lock:
            wanted = [e for e in self._endpoints.values() if event_type in e.event_types]
            return [replace(e, event_types=list(e.event_types)) for e in wanted]

    def clear(self) -> None:
        with self._lock:
            self._endpoints.clear()
