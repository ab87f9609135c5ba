"""``POST /api/responses``: run the prompt, find its files, queue one message per file."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import httpx
from azure.core.exceptions import ClientAuthenticationError

from shared.config import ConfigError
from shared.discovery import Discovery, find_artifacts, output_text
from shared.http_json import error_response, json_response
from shared.ids import is_valid_id
from shared.messages import ArtifactMessage
from shared.naming import blob_name, safe_filename
from shared.openai_client import UpstreamError
from shared.run_request import InvalidRequest, RunRequest, parse_run_request
from shared.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)

HTTP_BUDGET_SECONDS = 225.0  # Azure's front end ends an HTTP request at 230 s
_MIN_LISTING_SECONDS = 5.0


class _Refusal(Exception):
    """Ends the request early with a JSON error answer."""

    def __init__(self, response: func.HttpResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def start_run(req: func.HttpRequest, messages: func.Out[list[str]]) -> func.HttpResponse:
    try:
        return _start_run(req, messages)
    except Exception:
        # Never a stack trace or a bare 500: the details go to the log only.
        log.exception("unexpected error in start_run")
        return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")


def _start_run(req: func.HttpRequest, messages: func.Out[list[str]]) -> func.HttpResponse:
    started = time.monotonic()
    try:
        run = _parse(req)
        runtime = _runtime()
        response = _create_response(runtime, run, deadline=started + HTTP_BUDGET_SECONDS - _MIN_LISTING_SECONDS)
    except _Refusal as refusal:
        return refusal.response

    response_id = response.get("id")
    if not is_valid_id(response_id):
        return error_response(502, "upstream_error", "Azure OpenAI answered without a usable response id")

    def list_files(container_id: str) -> Iterator[dict[str, Any]]:
        # The front end cuts an HTTP request off at 230 s: a listing that would run past the
        # budget is skipped (and reported), so the caller still gets the cited files.
        remaining = HTTP_BUDGET_SECONDS - (time.monotonic() - started)
        if remaining < _MIN_LISTING_SECONDS:
            raise TimeoutError("no time left in the request to list the container")
        return runtime.openai.list_container_files(container_id, deadline=time.monotonic() + remaining)

    discovery = find_artifacts(response, list_files, exclude_file_ids=run.file_ids)
    queued = _messages(response_id, discovery)
    artifacts = [
        {"container_id": m.container_id, "file_id": m.file_id, "filename": m.filename, "blob_name": m.blob_name}
        for m in queued
    ]
    warnings = list(discovery.warnings)
    try:
        # Before queueing, so the status API knows every artifact from the start.
        runtime.status.write_manifest(response_id, response.get("status"), artifacts)
    except Exception as error:  # the files matter more than their status: queue them anyway
        log.error("could not write the manifest of %s: %s", response_id, type(error).__name__)
        warnings.append({"problem": "the status of this run could not be recorded; its files are still queued"})
    if queued:
        messages.set([message.to_json() for message in queued])
    log.info("response %s: queued %d artifact(s)", response_id, len(queued))

    body: dict[str, Any] = {
        "response_id": response_id,
        "status": response.get("status"),
        "output_text": output_text(response),
        "artifacts": artifacts,
    }
    if warnings:
        body["warnings"] = warnings
    return json_response(202, body)


def _parse(req: func.HttpRequest) -> RunRequest:
    try:
        return parse_run_request(req.get_body() or b"")  # the worker gives bytes; None when empty
    except InvalidRequest as invalid:
        raise _Refusal(
            error_response(
                invalid.status,
                "invalid_request" if invalid.status == 400 else "body_too_large",
                str(invalid),
                field=invalid.problems[0].field,
                details=[{"field": p.field, "problem": p.problem} for p in invalid.problems],
            )
        ) from None


def _runtime() -> Runtime:
    try:
        return get_runtime()
    except ConfigError as error:
        log.error("%s", error)
        raise _Refusal(error_response(500, "configuration_error", str(error))) from None


def _create_response(runtime: Runtime, run: RunRequest, deadline: float) -> dict[str, Any]:
    try:
        return runtime.openai.create_response(run.to_payload(runtime.settings.deployment), deadline=deadline)
    except UpstreamError as error:
        log.warning("Azure OpenAI rejected the run: %s", error)
        raise _Refusal(
            error_response(502, "upstream_error", "Azure OpenAI answered with an error", upstream=error.detail)
        ) from None
    except httpx.TimeoutException:
        raise _Refusal(error_response(504, "upstream_timeout", "Azure OpenAI did not answer in time")) from None
    except httpx.TransportError as error:
        log.warning("could not reach Azure OpenAI: %s", type(error).__name__)
        raise _Refusal(error_response(502, "upstream_unreachable", "could not reach Azure OpenAI")) from None
    except ClientAuthenticationError as error:
        log.error("could not get an Entra ID token for Azure OpenAI: %s", type(error).__name__)
        raise _Refusal(
            error_response(500, "credential_unavailable", "the app could not authenticate to Azure OpenAI")
        ) from None


def _messages(response_id: str, discovery: Discovery) -> list[ArtifactMessage]:
    return [
        ArtifactMessage(
            response_id=response_id,
            container_id=artifact.container_id,
            file_id=artifact.file_id,
            filename=artifact.filename,
            blob_name=blob_name(response_id, artifact.file_id, safe_filename(artifact.filename, artifact.file_id)),
            mime_type=artifact.mime_type,
            size=artifact.size,
        )
        for artifact in discovery.artifacts
    ]
