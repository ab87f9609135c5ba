"""Process-wide clients, built once from the settings and reused by every invocation.

Clients (HTTP connection pools, the credential and its token cache) are expensive to build and
cheap to share. They are rebuilt only if the settings they were made from change, which happens
in tests, never in a running app.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient, ExponentialRetry
from azure.storage.queue import ExponentialRetry as QueueExponentialRetry
from azure.storage.queue import QueueServiceClient

from shared.errors import ConfigError
from shared.host_settings import OVERRIDE_SETTINGS, HostSettings, host_settings
from shared.limits import INPUT_CHUNK_BYTES
from shared.openai_client import ApiKeyAuth, AzureOpenAIClient, BearerTokenAuth
from shared.retry import RetryPolicy
from shared.settings import SETTING_NAMES, Settings, StorageSettings, load_settings
from shared.storage.artifact_blobs import ArtifactStore
from shared.storage.input_blobs import InputBlobStore
from shared.storage.links import LinkSigner, link_signer
from shared.storage.queues import QueueSender
from shared.storage.status_records import StatusStore

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.eventgrid import EventGridPublisherClient

log = logging.getLogger(__name__)
STORAGE_POOL_SIZE = 64
_PROXY_ENV = tuple(name for base in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
                   for name in (base, base.lower()))
_CA_BUNDLE_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # requests' own names, in its order


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    openai: AzureOpenAIClient
    artifact_blobs: ArtifactStore
    status_records: StatusStore
    queues: QueueSender
    host: HostSettings
    download_retry: RetryPolicy
    links: LinkSigner | None  # None: the storage credential can sign no links (a SAS-only connection string)
    inputs: InputBlobStore | None = None  # None: no ARTIFACTS_INPUT_CONTAINER, input_blobs refused
    event_grid: EventGridPublisherClient | None = None  # ARTIFACTS_EVENT_GRID_ENDPOINT set: the topic's client

    @property
    def max_dequeue_count(self) -> int:
        """The delivery after which the host moves a message to the poison queue."""
        return self.host.max_dequeue_count


class _RuntimeCache:
    """Holds the runtime with the settings it was built from; rebuilt only when they change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entry: tuple[tuple[str | None, ...], Runtime] | None = None

    def get(self) -> Runtime:
        key = tuple(os.environ.get(name) for name in _REBUILD_ON)
        entry = self._entry
        if entry is not None and entry[0] == key:
            return entry[1]
        with self._lock:
            if self._entry is None or self._entry[0] != key:
                self._entry = (key, build_runtime(load_settings()))
            return self._entry[1]


_REBUILD_ON = SETTING_NAMES + OVERRIDE_SETTINGS
_cache = _RuntimeCache()


def get_runtime() -> Runtime:
    """The shared runtime; raises ConfigError naming every bad setting."""
    return _cache.get()


def check_settings_at_startup() -> None:
    """Log (not raise) bad settings when the app loads, so ``func start`` shows them at once."""
    try:
        load_settings()
    except ConfigError as error:
        log.error("%s", error)


class _DirectSession(requests.Session):
    """A session that hands each request straight to its pooled adapter, without the per-call
    extras azure-core never uses (cookies, hooks, auth, redirects, the environment's proxies):
    measured, 0.1 ms of CPU less per Storage request."""

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if args or kwargs.get("allow_redirects", True) or kwargs.get("proxies") or kwargs.get("cookies"):
            return super().request(method, url, *args, **kwargs)  # not azure-core's call: the full path
        prepared = requests.PreparedRequest()
        prepared.prepare(method=method, url=url, headers=kwargs.get("headers"), files=kwargs.get("files"),
                         data=kwargs.get("data") or {}, params=kwargs.get("params") or {}, json=kwargs.get("json"))
        stream = bool(kwargs.get("stream"))
        response: requests.Response = self.get_adapter(prepared.url or "").send(
            prepared, stream=stream, timeout=kwargs.get("timeout"), verify=kwargs.get("verify", True),
            cert=kwargs.get("cert"), proxies={},
        )
        if not stream:
            _ = response.content  # read whole now, releasing the connection, as Session.send does
        return response


def _storage_transport() -> RequestsTransport:
    """A connection pool as large as the invocations and block uploads that share it.

    requests' default keeps 10 connections per host; with 24 concurrent invocations (host.json)
    each staging up to 4 blocks, the rest would be opened and thrown away on every request.
    """
    # Without proxy settings in the environment, skip requests' scan of the whole environment on
    # every call (measured: 0.3-0.6 ms of CPU per request); a CA bundle named there is read once.
    proxied = any(name in os.environ for name in _PROXY_ENV)
    session = requests.Session() if proxied else _DirectSession()
    session.trust_env = proxied
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=STORAGE_POOL_SIZE)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    ca_bundle = next((os.environ[name] for name in _CA_BUNDLE_ENV if os.environ.get(name)), None)
    return RequestsTransport(session=session, session_owner=False, connection_verify=ca_bundle or True)


def _event_grid(settings: Settings, credential_for: Any) -> EventGridPublisherClient:
    """The topic's client, signing with the app's identity (a token for Event Grid, never a key).
    Few, quick retries: a publish that fails is retried by the watcher's next step, not here."""
    from azure.eventgrid import EventGridPublisherClient  # noqa: PLC0415 - only when the topic is set

    ca_bundle = next((os.environ[name] for name in _CA_BUNDLE_ENV if os.environ.get(name)), None)
    return EventGridPublisherClient(
        str(settings.event_grid_endpoint), credential_for(settings.client_id),
        retry_total=2, retry_backoff_factor=0.5, connection_timeout=10, read_timeout=30,
        connection_verify=ca_bundle or True,
    )


def build_runtime(settings: Settings, credential: TokenCredential | None = None) -> Runtime:
    """Clients for ``settings``; ``credential`` overrides DefaultAzureCredential (tests, tools)."""
    credentials: dict[str | None, TokenCredential] = {}

    def credential_for(client_id: str | None) -> TokenCredential:
        # Built only when a key or connection string is missing; one per managed identity.
        if credential is not None:
            return credential
        if client_id not in credentials:
            from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - slow import, rarely needed

            credentials[client_id] = DefaultAzureCredential(managed_identity_client_id=client_id)
        return credentials[client_id]

    auth: httpx.Auth
    if settings.api_key:
        auth = ApiKeyAuth(settings.api_key)
    else:
        from azure.identity import get_bearer_token_provider  # noqa: PLC0415 - as above

        auth = BearerTokenAuth(get_bearer_token_provider(credential_for(settings.client_id), settings.token_scope))

    # The SDK's default waits 15 s before its first retry; an invocation would rather fail fast
    # and let the queue redeliver.
    transport = _storage_transport()

    def storage_client(kind: type[BlobServiceClient] | type[QueueServiceClient], where: StorageSettings,
                       **extra: Any) -> Any:
        # Each SDK package brings its own copy of the storage retry policy.
        policy = ExponentialRetry if kind is BlobServiceClient else QueueExponentialRetry
        retry = policy(initial_backoff=1, increment_base=2, retry_total=3, random_jitter_range=1)
        options: dict[str, Any] = {"retry_policy": retry, "transport": transport, **extra}
        if where.connection_string:
            try:
                return kind.from_connection_string(where.connection_string, **options)
            except ValueError:
                raise ConfigError(["the storage connection string is malformed"]) from None
        client_id = where.client_id or settings.client_id
        return kind(str(where.account_url), credential=credential_for(client_id), **options)

    service: BlobServiceClient = storage_client(BlobServiceClient, settings.storage)
    queue_service: QueueServiceClient = storage_client(QueueServiceClient, settings.queue_storage)
    inputs: InputBlobStore | None = None
    if settings.input_container is not None:
        # Its own client: every GET of an input blob is one bounded piece, the first one too.
        reader: BlobServiceClient = storage_client(BlobServiceClient, settings.storage,
                                                   max_single_get_size=INPUT_CHUNK_BYTES,
                                                   max_chunk_get_size=INPUT_CHUNK_BYTES)
        inputs = InputBlobStore(reader, settings.input_container)
    host = host_settings()
    try:
        links: LinkSigner | None = link_signer(
            service, settings.artifacts_container, timedelta(minutes=settings.link_minutes)
        )
    except ConfigError as error:
        log.warning("%s; artifacts are listed without download links", error)
        links = None

    return Runtime(
        event_grid=_event_grid(settings, credential_for) if settings.event_grid_endpoint else None,
        settings=settings,
        openai=AzureOpenAIClient(
            settings.endpoint,
            auth,
            timeout_seconds=settings.timeout_seconds,
            secrets=(settings.api_key or "",),
            container_api_version=settings.container_api_version,
        ),
        artifact_blobs=ArtifactStore(service, settings.artifacts_container),
        status_records=StatusStore(service, settings.status_container),
        queues=QueueSender(queue_service, base64_messages=host.base64_messages),
        host=host,
        download_retry=RetryPolicy(attempts=settings.download_attempts),
        links=links,
        inputs=inputs,
    )
