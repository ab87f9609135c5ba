"""The Azure OpenAI v1 endpoints this app uses, on httpx.

The endpoint's rules, learned the hard way:
- container file content is ``/openai/v1/containers/{cid}/files/{fid}/content?api-version=preview``
  (``AZURE_OPENAI_CONTAINER_API_VERSION``, should the routes ever take another);
  the classic ``/openai/files/{id}/content`` answers 404 for ``cfile_`` ids, and a dated
  api-version answers 400 "API version not supported";
- auth is ``api-key: KEY`` or an Entra ID bearer token, never ``Bearer KEY``;
- an expired container answers 404 or 400 "Container is expired.": permanent, never retried.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import IO, Any, cast

import httpx

from shared.errors import (
    CreateOutcomeUnknown,
    FileGoneError,
    ResponseNotFound,
    TransientError,
    TransientUpstreamError,
    UpstreamError,
)
from shared.ids import is_valid_id, require_id
from shared.json_values import json_int
from shared.retry import RetryPolicy, retry_after_seconds

# The files API purpose for code interpreter inputs: Azure's Responses docs upload with it and pass
# the ids in the tool's container (``user_data`` is documented as not supported there).
UPLOAD_PURPOSE = "assistants"
CONTAINER_API_VERSION = "preview"  # the container routes' api-version unless told otherwise (a setting)
# Azure OpenAI routes the image_generation tool to the image model deployment this header names.
IMAGE_DEPLOYMENT_HEADER = "x-ms-oai-image-generation-deployment"
_MAX_ERROR_TEXT = 500
_LIST_PAGE_LIMIT = 100
_MAX_DOWNLOAD_READ_SECONDS = 60.0


# The service's own not-found answers name what is missing ("Container with id … not found.",
# "No such File object", "Response with id … not found."); a route that does not exist answers a
# bare "Resource not found".
_NAMES_A_MISSING_OBJECT = re.compile(r"\b(container|file|response)s?\b")
log = logging.getLogger(__name__)


_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class ApiKeyAuth(httpx.Auth):
    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        request.headers["api-key"] = self._api_key
        yield request


class BearerTokenAuth(httpx.Auth):
    """Entra ID: ``token_provider`` is azure-identity's cached bearer token provider."""

    def __init__(self, token_provider: Callable[[], str]) -> None:
        self._token_provider = token_provider

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {self._token_provider()}"
        yield request


class AzureOpenAIClient:
    """One pooled HTTP client per process, shared by every invocation."""

    def __init__(
        self,
        endpoint: str,
        auth: httpx.Auth,
        *,
        timeout_seconds: float,
        retry: RetryPolicy | None = None,
        secrets: tuple[str, ...] = (),
        container_api_version: str = CONTAINER_API_VERSION,
    ) -> None:
        self._base = endpoint.rstrip("/") + "/openai"
        self._container_api_version = container_api_version
        self._retry = retry or RetryPolicy()
        self._secrets = tuple(s for s in secrets if s)
        self._timeout = timeout_seconds
        self._http = httpx.Client(
            auth=auth,
            # Never follow a redirect: it would carry the credentials to wherever it points.
            follow_redirects=False,
            timeout=httpx.Timeout(timeout_seconds, connect=10.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            headers={"User-Agent": "aoai-artifact-persister/1.0"},
        )

    def close(self) -> None:
        self._http.close()

    def create_response(
        self, payload: dict[str, Any], deadline: float | None = None, *, image_deployment: str | None = None
    ) -> dict[str, Any]:
        """POST /openai/v1/responses. Only a 429 is retried: it means the run never started.

        ``image_deployment``: the image model deployment the payload's image_generation tool uses, sent
        as IMAGE_DEPLOYMENT_HEADER (Azure OpenAI answers 400 to the tool without it).

        ``deadline`` (a ``time.monotonic()`` value) bounds the call, waits between tries included.
        Raises UpstreamError for an answer that refused the run (4xx, 429), the transport's own
        error when no connection was made, and CreateOutcomeUnknown when the run may have started.
        """
        try:
            for attempt in self._retry.retrying(_Throttled, deadline=deadline):
                with attempt:
                    answer = self._http.post(
                        f"{self._base}/v1/responses", json=payload, timeout=self._timeout_until(deadline),
                        headers={IMAGE_DEPLOYMENT_HEADER: image_deployment} if image_deployment else None,
                    )
                    if answer.status_code == 429:
                        raise _Throttled(
                            429, self._error_detail(answer), retry_after_seconds(answer.headers)
                        )
        except _Throttled as throttled:
            raise UpstreamError(429, throttled.detail) from throttled
        except _NEVER_SENT:
            raise
        except httpx.TimeoutException as error:
            raise CreateOutcomeUnknown("Azure OpenAI did not answer in time", timed_out=True) from error
        except httpx.TransportError as error:
            raise CreateOutcomeUnknown("the connection to Azure OpenAI was lost before its answer",
                                       timed_out=False) from error
        if answer.status_code >= 500:  # a gateway may answer so after the run was made
            raise CreateOutcomeUnknown(f"Azure OpenAI answered {answer.status_code}", timed_out=False,
                                       detail=self._error_detail(answer))
        if answer.status_code != 200:
            raise UpstreamError(answer.status_code, self._error_detail(answer))
        try:
            return self._json_object(answer)
        except UpstreamError as error:  # answered 200: the run was made, its id unreadable
            raise CreateOutcomeUnknown(str(error.detail.get("message")), timed_out=False) from error

    def get_response(self, response_id: str, deadline: float | None = None) -> dict[str, Any]:
        """GET /openai/v1/responses/{id}: the run as it stands. Raises ResponseNotFound on 404."""
        rid = require_id(response_id, "response_id")
        try:
            return self._get_json(f"{self._base}/v1/responses/{rid}", {}, deadline)
        except FileGoneError as error:
            raise ResponseNotFound(error.status, error.detail) from error

    def cancel_response(self, response_id: str) -> dict[str, Any]:
        """POST /openai/v1/responses/{id}/cancel. Best-effort on Azure; raises UpstreamError when refused."""
        rid = require_id(response_id, "response_id")
        answer = self._http.post(f"{self._base}/v1/responses/{rid}/cancel")
        if answer.status_code == 404:
            raise ResponseNotFound(404, self._error_detail(answer))
        if answer.status_code != 200:
            self._raise_for(answer)
        return self._json_object(answer)

    def upload_file(self, filename: str, chunks: Iterator[bytes], *, content_type: str,
                    deadline: float | None = None) -> dict[str, Any]:
        """POST /openai/v1/files (``purpose=assistants``): one file, streamed from ``chunks``.

        The body is multipart, sent with chunked transfer encoding as the chunks come: at most one
        chunk of the source is in memory. Never retried (the chunks are spent); raises
        UpstreamError (or TransientUpstreamError for a 429/5xx) when refused.
        """
        reader = _ChunkReader(chunks)
        answer = self._http.post(
            f"{self._base}/v1/files",
            data={"purpose": UPLOAD_PURPOSE},
            files={"file": (filename, cast("IO[bytes]", reader), content_type)},
            timeout=self._timeout_until(deadline),
        )
        if answer.status_code != 200:
            self._raise_for(answer)
        uploaded = self._json_object(answer)
        if not is_valid_id(uploaded.get("id")):
            raise UpstreamError(502, {"message": "Azure OpenAI answered the upload without a usable file id"})
        return uploaded

    def delete_file(self, file_id: str, deadline: float | None = None) -> bool:
        """DELETE /openai/v1/files/{id}: True when deleted now, False when already gone (404).
        Raises TransientUpstreamError, UpstreamError or the transport's error otherwise."""
        fid = require_id(file_id, "file_id")
        answer = self._http.delete(f"{self._base}/v1/files/{fid}", timeout=self._timeout_until(deadline))
        if answer.status_code == 404:
            return False
        if answer.status_code != 200:
            self._raise_for(answer)
        return True

    def list_container_files(self, container_id: str, deadline: float | None = None) -> Iterator[dict[str, Any]]:
        """Every file in a container, following ``has_more``/``after`` across pages.

        ``deadline`` (a ``time.monotonic()`` value) bounds the whole listing, retries included.
        """
        cid = require_id(container_id, "container_id")
        after: str | None = None
        while True:
            params = {"api-version": self._container_api_version, "limit": str(_LIST_PAGE_LIMIT), "order": "asc"}
            if after:
                params["after"] = after
            page = self._get_json(f"{self._base}/v1/containers/{cid}/files", params, deadline)
            items = page.get("data")
            if not isinstance(items, list):
                raise UpstreamError(502, {"message": "container file list has no 'data' array"})
            files = [item for item in items if isinstance(item, dict)]
            yield from files
            last_id = page.get("last_id") or (files[-1].get("id") if files else None)
            if not page.get("has_more") or not isinstance(last_id, str) or last_id == after:
                return
            after = last_id

    @contextmanager
    def open_file_content(
        self, container_id: str, file_id: str, deadline: float | None = None
    ) -> Iterator[httpx.Response]:
        """Stream one container file. Raises FileGoneError, TransientUpstreamError or UpstreamError.

        ``deadline`` (a ``time.monotonic()`` value) caps the wait for each read of the body too.
        """
        cid = require_id(container_id, "container_id")
        fid = require_id(file_id, "file_id")
        url = f"{self._base}/v1/containers/{cid}/files/{fid}/content"
        request = self._http.build_request(
            "GET",
            url,
            params={"api-version": self._container_api_version},
            # A stalled body should fail and be retried well before the container expires.
            timeout=self._timeout_until(deadline, _MAX_DOWNLOAD_READ_SECONDS),
            # The file's own bytes: their count and hash must match what is stored.
            headers={"Accept-Encoding": "identity"},
        )
        answer = self._http.send(request, stream=True)
        try:
            if answer.status_code != 200:
                answer.read()
                self._raise_for(answer)
            yield answer
        finally:
            answer.close()

    def _get_json(self, url: str, params: dict[str, str], deadline: float | None) -> dict[str, Any]:
        for attempt in self._retry.retrying(TransientError, httpx.TransportError, deadline=deadline):
            with attempt:
                answer = self._http.get(url, params=params, timeout=self._timeout_until(deadline))
                if answer.status_code != 200:
                    self._raise_for(answer)
        return self._json_object(answer)

    def _timeout_until(self, deadline: float | None, cap: float | None = None) -> httpx.Timeout:
        seconds = self._timeout if cap is None else min(self._timeout, cap)
        if deadline is not None:
            seconds = max(min(seconds, deadline - time.monotonic()), 0.1)
        return httpx.Timeout(seconds, connect=min(seconds, 10.0))

    def _raise_for(self, answer: httpx.Response) -> None:
        detail = self._error_detail(answer)
        status = answer.status_code
        message = str(detail.get("message", "")).lower()
        if status == 400 and "expired" in message:
            raise FileGoneError(status, detail)
        if status == 404:
            if _NAMES_A_MISSING_OBJECT.search(message):
                raise FileGoneError(status, detail)
            # A wrong endpoint, a gateway, a typo in the route: every file of every run would be
            # recorded as gone. It is configuration, so the message is kept and retried.
            log.error("Azure OpenAI answered 404 for a route, not for an object (check AZURE_OPENAI_ENDPOINT): %s",
                      detail.get("message"))
            raise TransientUpstreamError(status, {**detail, "route_not_found": True}, None)
        if status == 429 or status >= 500:
            raise TransientUpstreamError(status, detail, retry_after_seconds(answer.headers))
        raise UpstreamError(status, detail)

    def _json_object(self, answer: httpx.Response) -> dict[str, Any]:
        try:
            body = answer.json()
        except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, or nested past the parser
            raise UpstreamError(502, {"message": "Azure OpenAI answered with invalid JSON"}) from error
        if not isinstance(body, dict):
            raise UpstreamError(502, {"message": "Azure OpenAI answered with JSON that is not an object"})
        return body

    def _error_detail(self, answer: httpx.Response) -> dict[str, Any]:
        """The upstream error's code and message, bounded and scrubbed of our own secrets."""
        try:
            body = answer.json()
        except (ValueError, RecursionError):
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        detail: dict[str, Any] = {"status": answer.status_code}
        if isinstance(error, dict):
            for key in ("code", "type", "param", "message"):
                value = error.get(key)
                if isinstance(value, str) or json_int(value) is not None:
                    detail[key] = self._scrub(str(value))
        elif isinstance(error, str):
            detail["message"] = self._scrub(error)
        detail.setdefault("message", answer.reason_phrase or f"HTTP {answer.status_code}")
        return detail

    def _scrub(self, text: str) -> str:
        """Our key as a whole token (any long key wherever it is), and any credential value, become ``***``."""
        return _scrub_credentials(text, self._secrets)[:_MAX_ERROR_TEXT]


class _ChunkReader:
    """A file-like view of an iterator of byte chunks, without a length: httpx streams it as it
    reads it (``read`` only; no ``seek``, ``fileno`` or ``tell``, so the body is sent chunked)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._pending = bytes(chunk)
        if size < 0 or size >= len(self._pending):
            piece, self._pending = self._pending, b""
        else:
            piece, self._pending = self._pending[:size], self._pending[size:]
        return piece


class _Throttled(TransientUpstreamError):
    """A 429 on create: the only POST failure that is safe to retry."""


# Scrubbing error text. A key is matched as a whole token: not inside a longer run of letters, digits,
# "-" or "_", so a short key leaves ordinary words alone. A key this long is matched anywhere: no word
# contains it by chance, and one glued to other text is still the key.
_KEY_MATCHED_ANYWHERE = 16
# The value after "api-key:", "api-key=", "api_key", "Ocp-Apim-Subscription-Key:" (quoted or not), on
# the same line; it ends at a space, a quote, a bracket, a delimiter or a final ".".
_API_KEY_VALUE = re.compile(
    r"""(?P<name>(?:api|subscription)[-_]?key["']?[ \t]*[:=][ \t]*["']?)"""
    r"""(?P<value>[^\s"'`<>()\[\]{},;&]*[^\s"'`<>()\[\]{},;&.])""",
    re.IGNORECASE,
)
# "Bearer <token>" (RFC 6750's token characters), in an Authorization header or anywhere else.
_BEARER_VALUE = re.compile(r"(?P<name>\bbearer[ \t]+)(?P<value>[A-Za-z0-9\-._~+/]*[A-Za-z0-9\-_~+/]=*)", re.IGNORECASE)
# What follows "Bearer" in prose ("Bearer token", "bearer of"): letters only, shorter than any token.
_PLAIN_WORD = re.compile(r"[A-Za-z]{1,19}")


def _scrub_credentials(text: str, secrets: tuple[str, ...]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _KEY_MATCHED_ANYWHERE:
            text = text.replace(secret, "***")
        else:
            text = re.sub(rf"(?<![\w-]){re.escape(secret)}(?![\w-])", "***", text)
    text = _API_KEY_VALUE.sub(r"\g<name>***", text)
    return _BEARER_VALUE.sub(
        lambda match: match[0] if _PLAIN_WORD.fullmatch(match["value"]) else match["name"] + "***", text
    )
