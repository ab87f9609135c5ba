"""Sending webhooks: each message from a thread of its own, a short bounded retry, every attempt recorded.

Azure delivers asynchronously and retries a delivery the receiver did not take (OpenAI documents
exponential backoff for up to 72 hours; anything but a 2xx, redirects included, is a failure). The
fake keeps the shape and shrinks the scale: after a non-2xx answer or a connection error it tries
``retries`` more times, waiting ``backoff_seconds`` and then twice as long each time; every attempt
has ``timeout_seconds`` to be answered (Azure's documented budget is 10 s). Each attempt is signed
afresh (a new ``webhook-timestamp``) under the message's one ``webhook-id``.

Never on the caller's thread: a run ended from inside the app's own request (a cancel, say) must
not wait for that same app to take the webhook.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fake_openai.webhooks import WebhookEndpoint, event_body, new_webhook_id, signed_headers


@dataclass(frozen=True)
class WebhookDelivery:
    """One attempt to deliver one message."""

    url: str
    webhook_id: str
    event_type: str
    response_id: str
    attempt: int  # 1 for the first try of a message
    status: int | None  # what the receiver answered; None when it could not be reached
    error: str | None  # why the attempt failed; None when the receiver answered 2xx
    endpoint_id: str | None  # the registered endpoint; None for a hand-made send

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3
    backoff_seconds: float = 0.05
    timeout_seconds: float = 10.0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed delivery, as OpenAI counts it, not a second request elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# No proxy: the receivers are on loopback, whatever the environment says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST ``body`` and answer the status code; OSError when the receiver cannot be reached."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            answer.read()
            status: int = answer.status
            return status
    except urllib.error.HTTPError as error:  # a non-2xx answer is an answer
        with error:
            error.read()
        return error.code


class Deliverer:
    """Sends and records webhook messages; thread-safe."""

    def __init__(self, policy: RetryPolicy, current_url: Callable[[str], str | None] | None = None) -> None:
        self.policy = policy
        # A retry goes to the endpoint's URL as registered now (updated since the first attempt,
        # e.g. the app moved behind a new address): None when it was deleted meanwhile.
        self._current_url = current_url
        self._changed = threading.Condition()
        self._records: list[WebhookDelivery] = []
        self._pending = 0  # messages whose last attempt has not been made yet
        self._closed = threading.Event()

    def deliver(self, endpoint: WebhookEndpoint, event_type: str, response_id: str, created_at: int) -> None:
        """Send the event to ``endpoint`` from a new thread, retrying as the policy says."""
        body = event_body(event_type, response_id, created_at=created_at)
        with self._changed:
            self._pending += 1
        thread = threading.Thread(
            target=self._run, args=(endpoint, event_type, response_id, body), name="fake-webhook", daemon=True
        )
        thread.start()

    def send(self, url: str, body: bytes, headers: dict[str, str], event_type: str, response_id: str) -> int:
        """One hand-made attempt, from the calling thread; recorded like the others.

        Raises OSError when the receiver cannot be reached (recorded first)."""
        webhook_id = headers.get("webhook-id", "")
        try:
            status = post(url, body, headers, self.policy.timeout_seconds)
        except OSError as error:
            self._add(WebhookDelivery(url, webhook_id, event_type, response_id, 1, None, _describe(error), None))
            raise
        failure = None if 200 <= status < 300 else f"answered {status}"
        self._add(WebhookDelivery(url, webhook_id, event_type, response_id, 1, status, failure, None))
        return status

    def records(self) -> list[WebhookDelivery]:
        with self._changed:
            return list(self._records)

    def wait_for(self, count: int, timeout: float, response_id: str | None = None) -> list[WebhookDelivery]:
        """At least ``count`` attempts (for ``response_id``, if given); TimeoutError after ``timeout`` s."""

        def matching() -> list[WebhookDelivery]:
            return [r for r in self._records if response_id is None or r.response_id == response_id]

        with self._changed:
            if not self._changed.wait_for(lambda: len(matching()) >= count, timeout):
                raise TimeoutError(f"{len(matching())} of {count} webhook deliveries within {timeout} s")
            return matching()

    def wait_settled(self, timeout: float) -> None:
        """Until every message has made its last attempt; TimeoutError after ``timeout`` s."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._pending == 0, timeout):
                raise TimeoutError(f"{self._pending} webhook message(s) still being delivered after {timeout} s")

    def clear(self) -> None:
        with self._changed:
            self._records.clear()

    def open(self) -> None:
        self._closed.clear()

    def close(self) -> None:
        """No retry after this; an attempt under way ends within its timeout."""
        self._closed.set()

    def _run(self, endpoint: WebhookEndpoint, event_type: str, response_id: str, body: bytes) -> None:
        webhook_id = new_webhook_id()
        delay = self.policy.backoff_seconds
        try:
            for attempt in range(1, self.policy.retries + 2):
                if self._closed.is_set():
                    return
                headers = signed_headers(endpoint.secret, webhook_id, int(time.time()), body)
                url = (self._current_url(endpoint.endpoint_id) if self._current_url else None) or endpoint.url
                status: int | None = None
                try:
                    status = answered = post(url, body, headers, self.policy.timeout_seconds)
                    failure = None if 200 <= answered < 300 else f"answered {answered}"
                except OSError as error:
                    failure = _describe(error)
                record = WebhookDelivery(
                    url, webhook_id, event_type, response_id, attempt, status, failure, endpoint.endpoint_id
                )
                self._add(record)
                if record.ok or attempt > self.policy.retries or self._closed.wait(delay):
                    return
                delay *= 2
        finally:
            with self._changed:
                self._pending -= 1
                self._changed.notify_all()

    def _add(self, record: WebhookDelivery) -> None:
        with self._changed:
            self._records.append(record)
            self._changed.notify_all()


def _describe(error: OSError) -> str:
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    return reason if isinstance(reason, str) else f"{type(reason).__name__}: {reason}"
