"""``POST /api/webhooks/azure-openai``: Azure OpenAI says a response ended; the app reacts at once.

Deliveries follow the Standard Webhooks scheme (``webhook-id``, ``webhook-timestamp`` and
``webhook-signature``: HMAC-SHA256 with the endpoint's ``whsec_`` secret, AZURE_OPENAI_WEBHOOK_SECRET),
verified by the ``standardwebhooks`` library, which refuses a timestamp more than 5 minutes
away from now. Azure gives a delivery 10 seconds, so this only queues work: a wake-up for the
run watcher. The watcher's delayed polls stay as the safety net, so a lost webhook costs at most
a poll interval.

Answers: 401 for an unsigned, badly signed or stale delivery (or when no secret is configured);
400 for a signed body that is not a usable event; 503 when the wake-up could not be queued (Azure
retries); otherwise 200, whether the event was acted on or not (an event type not handled, a run
the app does not follow, a ``webhook-id`` already handled), so Azure does not retry it.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func
from azure.core.exceptions import AzureError
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared.api.answers import json_errors, json_response, runtime_or_refuse
from shared.errors import Refusal
from shared.ids import is_valid_id
from shared.json_values import parse_json
from shared.runtime import Runtime
from shared.storage.messages import WatchMessage

log = logging.getLogger(__name__)

# The events of a response that ended, however it ended; each may have left files.
RESPONSE_ENDED_EVENTS = ("response.completed", "response.failed", "response.cancelled", "response.incomplete")
_SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
_MAX_WEBHOOK_ID_CHARS = 256


@json_errors
def receive_webhook(req: func.HttpRequest) -> func.HttpResponse:
    runtime = runtime_or_refuse()
    body = req.get_body() or b""
    headers = {name: str(req.headers.get(name) or "") for name in _SIGNATURE_HEADERS}
    webhook_id = headers["webhook-id"][:_MAX_WEBHOOK_ID_CHARS]
    _verify(runtime, body, headers)

    event = _event(body)
    if runtime.status_records.webhook_handled(webhook_id):
        return _ok(webhook_id, handled=False, reason="duplicate: this webhook-id was handled already")
    event_type = event.get("type")
    if event_type not in RESPONSE_ENDED_EVENTS:
        return _done(runtime, webhook_id, handled=False, reason=f"event type {str(event_type)[:64]!r} is not handled")
    data = event.get("data")
    response_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(response_id, str) or not is_valid_id(response_id):
        raise Refusal(400, "invalid_event", "data.id: must be the response id", field="data.id")

    try:
        try:
            followed = runtime.status_records.runs.read(response_id) is not None
        except ValueError:  # a damaged record: only an import (with the import right) rebuilds it
            log.error("webhook %s for run %s: the run's record is unreadable", webhook_id, response_id)
            return _done(runtime, webhook_id, handled=False, reason="the run's record is unreadable",
                         response_id=response_id)
        # A POST that never heard its create's answer may be waiting for this run: the capture
        # matches the claim tag the run carries (one GET), whatever the capture mode.
        claims = runtime.status_records.claims
        capture = not followed and (runtime.settings.webhook_capture == "all" or claims.any_pending())
        if not followed and not capture:
            log.info("webhook %s: %s for run %s: not followed, not captured", webhook_id, event_type, response_id)
            return _done(runtime, webhook_id, handled=False, reason="the app does not follow this run",
                         response_id=response_id)
        runtime.queues.send(runtime.settings.queues.runs, WatchMessage(response_id, capture=capture).to_json())
    except AzureError as error:
        log.error("webhook %s for run %s could not be queued: %s", webhook_id, response_id, type(error).__name__)
        raise Refusal(503, "not_queued", "the event could not be queued; deliver it again") from None
    log.info("webhook %s: %s for run %s queued (%s)", webhook_id, event_type, response_id,
             "capture" if capture else "wake")
    return _done(runtime, webhook_id, handled=True, response_id=response_id, captured=capture)


def _verify(runtime: Runtime, body: bytes, headers: dict[str, str]) -> None:
    """A delivery signed with the current secret, or (during a rotation) the one being replaced."""
    current = runtime.settings.webhook_secret
    # The one being replaced only beside a current one: clearing the current secret stops every delivery.
    secrets = [] if current is None else [current, *filter(None, [runtime.settings.webhook_secret_previous])]
    if not secrets:
        log.warning("webhook refused: AZURE_OPENAI_WEBHOOK_SECRET is not set (or its Key Vault reference "
                    "did not resolve)")
        raise Refusal(401, "webhook_not_configured",
                      "webhooks are not configured on this app: its operator sets AZURE_OPENAI_WEBHOOK_SECRET")
    reason = ""
    for secret in secrets:
        try:
            Webhook(secret).verify(body, headers, json_parse=False)
            return
        except (WebhookVerificationError, ValueError) as error:  # ValueError: malformed headers or body bytes
            # The reason, never the secret, the signature or the body.
            malformed = not isinstance(error, WebhookVerificationError)
            reason = "malformed signature headers or body" if malformed else str(error)
    log.warning("webhook refused (webhook-id %r): %s", headers["webhook-id"][:64], reason)
    raise Refusal(401, "invalid_signature", "the webhook signature is missing, invalid or stale")


def _event(body: bytes) -> dict[str, Any]:
    try:
        event = parse_json(body)
    except ValueError as error:
        raise Refusal(400, "invalid_event", f"body: the signed body {error}", field="body") from None
    if not isinstance(event, dict):
        raise Refusal(400, "invalid_event", "body: the event must be a JSON object", field="body")
    return event


def _done(runtime: Runtime, webhook_id: str, **outcome: Any) -> func.HttpResponse:
    """Remember the delivery (best effort: at worst a retry does the same harmless work again)."""
    try:
        runtime.status_records.note_webhook(webhook_id, outcome)
    except AzureError as error:
        log.warning("could not remember webhook %s: %s", webhook_id, type(error).__name__)
    return _ok(webhook_id, **outcome)


def _ok(webhook_id: str, **outcome: Any) -> func.HttpResponse:
    return json_response(200, {"received": True, "webhook_id": webhook_id, **outcome})
