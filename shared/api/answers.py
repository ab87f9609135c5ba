"""JSON answers for the HTTP functions: every answer, error or not, is a JSON object."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
import httpx
from azure.core.exceptions import ClientAuthenticationError
from opentelemetry.trace import SpanKind

from shared.errors import ConfigError, Refusal, TransientUpstreamError, UpstreamError
from shared.ids import is_valid_id
from shared.runtime import Runtime, get_runtime
from shared.telemetry import annotate, fail, step_span

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2  # when a caller should first look at the status API


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        headers=headers,
        mimetype="application/json",
        charset="utf-8",
    )


def _error_response(status: int, code: str, message: str, **extra: Any) -> func.HttpResponse:
    return json_response(status, {"error": {"code": code, "message": message, **extra}})


Handler = Callable[[func.HttpRequest], func.HttpResponse]


def json_errors(handler: Handler) -> Handler:
    """A refusal becomes its answer; anything unexpected a JSON 500, never a stack trace. Each
    request is a span (under the host's request span, in Azure) with its answer's status."""

    @functools.wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        with step_span(handler.__name__, kind=SpanKind.SERVER, response_id=req.route_params.get("response_id")) as span:
            answer = _answer(req)
            annotate(span, http_status=answer.status_code)
            if answer.status_code >= 500:
                fail(span, "server_error")
            return answer

    def _answer(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return handler(req)
        except Refusal as refusal:
            return _error_response(refusal.status, refusal.code, refusal.message, **refusal.extra)
        except Exception:
            log.exception("unexpected error in %s", handler.__name__)  # the details go to the log only
            return _error_response(500, "internal_error", "an unexpected error occurred; it has been logged")

    return wrapper


def runtime_or_refuse() -> Runtime:
    try:
        return get_runtime()
    except ConfigError as error:
        log.error("%s", error)
        raise Refusal(500, "configuration_error", str(error)) from None


def route_response_id(req: func.HttpRequest) -> str:
    response_id = req.route_params.get("response_id", "")
    if not is_valid_id(response_id):
        raise Refusal(400, "invalid_request", "response_id: must be letters, digits, '_' or '-'", field="response_id")
    return response_id


def status_url(req: func.HttpRequest, response_id: str) -> str:
    """The run's status API URL, from the request's own (its query, where a function key may be, dropped)."""
    parts = urlsplit(req.url)
    segments = parts.path.split("/")
    # Everything up to ".../responses", whichever of this app's routes was called.
    base = "/".join(segments[: segments.index("responses") + 1]) if "responses" in segments else "/api/responses"
    return f"{parts.scheme}://{parts.netloc}{base}/{response_id}"


def accepted(req: func.HttpRequest, response_id: str, body: dict[str, Any],
             headers: dict[str, str] | None = None) -> func.HttpResponse:
    """202 for a run the app now follows: its status URL in the body and in ``Location``."""
    url = status_url(req, response_id)
    return json_response(
        202,
        {"response_id": response_id, **body, "status_url": url},
        {"Location": url, "Retry-After": str(RETRY_AFTER_SECONDS), **(headers or {})},
    )


def unknown_run(response_id: str) -> Refusal:
    return Refusal(404, "not_found", f"no run with response_id {response_id!r} is known")


def storage_unavailable(response_id: str, error: Exception) -> Refusal:
    """Storage could not be read: the same answer whether or not the run exists."""
    log.error("could not read the records of %s: %s", response_id, type(error).__name__)
    return Refusal(503, "storage_unavailable", "the run's records could not be read; try again")


# What to fix when Azure OpenAI has no such route: the endpoint's form, named as its setting.
ENDPOINT_FORM = ("check the form of AZURE_OPENAI_ENDPOINT: https://<resource>.openai.azure.com (a trailing /openai "
                 "or /openai/v1 is accepted, no other path)")
CREDENTIAL_HINT = ("set AZURE_OPENAI_API_KEY, or let the app get an Entra ID token: sign in with `az login` "
                   "(locally), or give the app's managed identity (AZURE_CLIENT_ID) a role on the resource (in Azure)")


def upstream_refusal(error: Exception) -> Refusal:
    """An Azure OpenAI call that failed, as the caller should see it (no secrets: details are scrubbed).
    A failure that only configuration can cure names the setting to fix."""
    if isinstance(error, TransientUpstreamError):  # before UpstreamError, which includes it
        if error.detail.get("route_not_found"):
            return Refusal(502, "upstream_route_not_found", f"Azure OpenAI has no such route: {ENDPOINT_FORM}",
                           upstream=error.detail)
        return Refusal(503, "upstream_unavailable", "Azure OpenAI is busy or unavailable; try again",
                       upstream=error.detail)
    if isinstance(error, UpstreamError):
        log.warning("Azure OpenAI refused: %s", error)
        return _refused_upstream(error)
    if isinstance(error, httpx.TimeoutException):
        return Refusal(504, "upstream_timeout", "Azure OpenAI did not answer in time")
    if isinstance(error, httpx.TransportError):
        log.warning("could not reach Azure OpenAI: %s", type(error).__name__)
        return Refusal(502, "upstream_unreachable", "could not reach Azure OpenAI")
    if isinstance(error, ClientAuthenticationError):
        log.error("could not get an Entra ID token for Azure OpenAI: %s", type(error).__name__)
        return Refusal(500, "credential_unavailable",
                       f"the app could not authenticate to Azure OpenAI: {CREDENTIAL_HINT}")
    raise error


def _refused_upstream(error: UpstreamError) -> Refusal:
    param = error.detail.get("param")
    if error.status == 400 and isinstance(param, str) and param:
        # A field of the caller's request the model refuses (temperature on a reasoning model):
        # named, as any other bad field is.
        return Refusal(400, "invalid_request", f"{param}: Azure OpenAI refused it: {error.detail.get('message')}",
                       field=param, upstream=error.detail)
    if error.status == 404:
        # A create (or any call) whose route or deployment does not exist there: configuration.
        named = f"{error.detail.get('code', '')} {error.detail.get('message', '')}".lower()
        fix = ("Azure OpenAI has no such deployment: check AZURE_OPENAI_DEPLOYMENT (or the request's model)"
               if "deployment" in named else f"Azure OpenAI answered 404, the route does not exist: {ENDPOINT_FORM}")
        log.error("%s", fix)
        return Refusal(502, "upstream_error", fix, upstream=error.detail)
    return Refusal(502, "upstream_error", "Azure OpenAI answered with an error", upstream=error.detail)


UPSTREAM_FAILURES = (UpstreamError, httpx.TransportError, ClientAuthenticationError)
