"""App settings: one table, read from the environment once, validated, errors naming the setting.

``SETTINGS`` declares every setting once: its name, how it is parsed, its default, whether it is
required and what it is for. ``load_settings`` reads the app's settings through it; the settings
table in docs/operations.md and ``local.settings.json.example`` are written from it
(``python -m scripts.settings_docs``, checked by the tests), and the deployment check compares
infra/'s app settings and defaults with it (tests/infra/settings_check.py).

Secrets (the API key, connection strings) are kept out of ``repr`` so a logged ``Settings``
never leaks them. Standard library only: the deployment check loads this module outside the app.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from shared.errors import ConfigError
from shared.limits import (
    DEFAULT_INPUT_BLOB_BYTES,
    DEFAULT_INPUT_TOTAL_BYTES,
    DEFAULT_UPSTREAM_CALL_SECONDS,
    HTTP_REQUEST_LIMIT_SECONDS,
    MAX_LINK_MINUTES,
    MAX_UPSTREAM_CALL_SECONDS,
    OPENAI_FILE_MAX_BYTES,
    QUEUE_MAX_VISIBILITY_SECONDS,
)

T = TypeVar("T")

POISON_SUFFIX = "-poison"  # the host's: a message that failed maxDequeueCount times moves there
MIN_POLL_SECONDS = 1  # 0 times any growth stays 0: the watcher would poll in a hot loop
WEBHOOK_CAPTURE_MODES = ("started", "all")  # which ended responses a webhook makes the app persist
KEY_VAULT_REFERENCE_PREFIX = "@Microsoft.KeyVault("  # what App Service leaves in a setting it could not resolve

# Storage naming rules: queues and containers share them (3-63, lowercase, digits, single hyphens).
_STORAGE_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
# A queue's poison queue appends POISON_SUFFIX and must still be a valid name.
_MAX_QUEUE_NAME = 63 - len(POISON_SUFFIX)
_QUEUE_NAME = re.compile(rf"^(?=.{{3,{_MAX_QUEUE_NAME}}}$)[a-z0-9]+(-[a-z0-9]+)*$")

# An Entra ID scope for a resource's token (``https://<resource>/.default``), and an ``api-version`` value.
_TOKEN_SCOPE = re.compile(r"^https://[A-Za-z0-9.-]+(/[A-Za-z0-9._~-]+)*/\.default$")
_API_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,31}$")
# An Entra app role's value (what the token's ``roles`` claim carries), and a model deployment's name.
_APP_ROLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")
_DEPLOYMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# The only hosts AZURE_OPENAI_ENDPOINT may reach over plain http://: the credentials never leave the machine.
_LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")

# The Functions host understands this shorthand; the storage SDK does not, so it is expanded to
# Azurite's well-known development account (a published, non-secret key).
_DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


# --- Parsers: the raw text (never empty) to a value, or ValueError saying what it must be ------


def _text(raw: str) -> str | None:
    return raw


def _positive_int(raw: str) -> int:
    if not raw.isdigit() or int(raw) == 0:
        raise ValueError("must be a positive whole number")
    return int(raw)


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:  # also refuses NaN
        raise ValueError("must be a positive number of seconds")
    return value


def _flag(raw: str) -> bool:
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ValueError("must be true or false")


def _whole_seconds(raw: str) -> int:
    if not raw.isdigit() or not MIN_POLL_SECONDS <= int(raw) <= QUEUE_MAX_VISIBILITY_SECONDS:
        raise ValueError(
            f"must be a whole number of seconds from {MIN_POLL_SECONDS} to {QUEUE_MAX_VISIBILITY_SECONDS}"
        )
    return int(raw)


def _upstream_timeout(raw: str) -> float:
    value = _positive_float(raw)
    if value > MAX_UPSTREAM_CALL_SECONDS:
        raise ValueError(f"must be at most {MAX_UPSTREAM_CALL_SECONDS} "
                         f"(an HTTP request is cut off at {HTTP_REQUEST_LIMIT_SECONDS} s)")
    return value


def _link_minutes(raw: str) -> int:
    value = _positive_int(raw)
    if value > MAX_LINK_MINUTES:
        raise ValueError(f"must be at most {MAX_LINK_MINUTES} ({MAX_LINK_MINUTES // (24 * 60)} days)")
    return value


def _container_name(raw: str) -> str:
    if not _STORAGE_NAME.match(raw):
        raise ValueError(f"is {raw!r}: must be 3-63 lowercase letters, digits or single hyphens")
    return raw


def _capture_mode(raw: str) -> str:
    if raw.lower() not in WEBHOOK_CAPTURE_MODES:
        raise ValueError(f"must be one of {', '.join(WEBHOOK_CAPTURE_MODES)}")
    return raw.lower()


def _webhook_secret(raw: str) -> str | None:
    """The Standard Webhooks secret, or None while it is a Key Vault reference not (yet) resolved.

    An unresolved reference is not a configuration error of the whole app: the secret may not be
    stored yet (the registration script writes it after provisioning). Webhooks are refused until then.
    """
    if raw.startswith(KEY_VAULT_REFERENCE_PREFIX):
        return None
    encoded = raw.removeprefix("whsec_")
    try:
        usable = bool(base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True))
    except ValueError:
        usable = False
    if not usable:
        raise ValueError("must be the endpoint's signing secret: whsec_ and base64")
    return raw


def _role_name(raw: str) -> str:
    if not _APP_ROLE.match(raw):
        raise ValueError("must be an app role's value: letters, digits and . _ - (at most 120)")
    return raw


def _deployment_names(raw: str) -> str:
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if any(not _DEPLOYMENT_NAME.match(name) for name in names):
        raise ValueError("must be deployment names separated by commas (letters, digits, . _ -)")
    return ",".join(names)


def _image_deployment(raw: str) -> str:
    if not _DEPLOYMENT_NAME.match(raw):
        raise ValueError("must be a deployment name (letters, digits, . _ -)")
    return raw


def _token_scope(raw: str) -> str:
    if not _TOKEN_SCOPE.match(raw):
        raise ValueError("must be a scope like https://cognitiveservices.azure.com/.default (https://, then "
                         "/.default at the end)")
    return raw


def _api_version(raw: str) -> str:
    if not _API_VERSION.match(raw):
        raise ValueError("must be an api-version value such as preview (letters, digits, . and -)")
    return raw


def _endpoint(raw: str) -> str:
    """The resource URL, with or without a trailing ``/openai`` or ``/openai/v1``."""
    problem = "must be an http(s) URL with a host name"
    try:
        parts = urlsplit(raw)
        hostname = parts.hostname
    except ValueError:  # a malformed host ("http://[::1"): no host name to speak of
        raise ValueError(problem) from None
    if not hostname or parts.scheme not in ("http", "https"):
        raise ValueError(problem)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not carry a query, fragment or credentials")
    if parts.scheme == "http" and not _is_loopback(hostname):
        raise ValueError(
            "must be https:// (plain http:// is allowed only for loopback: localhost, "
            "127.0.0.0/8 or ::1), or the API key or token would cross the network in cleartext"
        )
    path = parts.path.rstrip("/")
    for suffix in ("/openai/v1", "/openai"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return f"{parts.scheme}://{parts.netloc}{path}"


def _event_source(raw: str) -> str:
    """A CloudEvents ``source``: a URI-reference (absolute, or a path like ``/artifacts/prod``)."""
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in raw) or len(raw) > 512:
        raise ValueError("must be a URI-reference (e.g. /artifacts/prod or https://…) without spaces, "
                         "at most 512 characters")
    try:
        urlsplit(raw)
    except ValueError:
        raise ValueError("must be a URI-reference (e.g. /artifacts/prod or https://…)") from None
    return raw


def _event_grid_endpoint(raw: str) -> str | None:
    """An Event Grid topic's endpoint: https:// only (the app's token goes there)."""
    try:
        parts = urlsplit(raw)
        usable = parts.scheme == "https" and bool(parts.hostname)
    except ValueError:  # a malformed host
        usable = False
    if not usable:
        raise ValueError("must be the topic's https:// endpoint, e.g. https://<topic>.<region>-1.eventgrid.azure.net"
                         "/api/events")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not carry a query, fragment or credentials")
    return raw


def _is_loopback(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``::1`` exactly: no other name, whatever it resolves to."""
    if host == "localhost":  # urlsplit lowercases the host name
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address in _LOOPBACK_V4
    return address == _LOOPBACK_V6


# --- The table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting[T]:
    """One setting: everything the code, the docs, the example and the deployment check know of it."""

    name: str
    default: T
    parse: Callable[[str], T]
    description: str
    required: str = "no"  # the docs' "required" column: "yes", "no", "in Azure", "for webhooks", ...
    missing: str = ""  # set: the setting is required, and this says what to put in it
    shown_default: str = ""  # the docs' default column, when it says more than the default
    # "app": read by load_settings; "telemetry": read from the environment when telemetry starts;
    # "host": read by the Functions host or the Python worker, listed for the docs and infra/.
    # "local": read by the host only under ``func start`` (local.settings.json); never an Azure app setting.
    read_by: Literal["app", "telemetry", "host", "local"] = "app"
    example: str | None = None  # its value in local.settings.json.example; None: left out

    def read(self, source: Mapping[str, str], problems: list[str]) -> T:
        """The value, or the default with the problem noted (every problem is reported at once)."""
        raw = source.get(self.name, "").strip()
        if not raw:
            if self.missing:
                problems.append(f"{self.name} is not set ({self.missing})")
            return self.default
        try:
            return self.parse(raw)
        except ValueError as error:
            problems.append(f"{self.name} {error}")
            return self.default


ENDPOINT = Setting(
    "AZURE_OPENAI_ENDPOINT", "", _endpoint,
    "`https://<resource>.openai.azure.com` (a trailing `/openai/v1` is accepted). `http://` only for loopback "
    "(`localhost`, `127.0.0.0/8`, `[::1]`), e.g. a local fake; any other `http://` host is refused when the app "
    "loads, as the key or token would cross the network in cleartext",
    required="yes", missing="e.g. https://my-resource.openai.azure.com", example="",
)
DEPLOYMENT = Setting(
    "AZURE_OPENAI_DEPLOYMENT", "", str, "default model deployment",
    required="yes", missing="the model deployment name to call", example="gpt-5.6-terra",
)
API_KEY = Setting(
    "AZURE_OPENAI_API_KEY", None, _text,
    "sent as `api-key`. When absent: Entra ID via `DefaultAzureCredential`, `Authorization: Bearer` with a token "
    "for `AZURE_OPENAI_TOKEN_SCOPE`. The key is never sent as a Bearer token",
    example="",
)
TOKEN_SCOPE = Setting(
    "AZURE_OPENAI_TOKEN_SCOPE", "https://cognitiveservices.azure.com/.default", _token_scope,
    "the scope of the Entra ID token when no key is set. The default is the one documented for Azure OpenAI "
    "resources (`https://<name>.openai.azure.com`); Microsoft Foundry's documentation (2026) uses "
    "`https://ai.azure.com/.default` for a Foundry resource's endpoint (`https://<name>.services.ai.azure.com`)",
)
CONTAINER_API_VERSION = Setting(
    "AZURE_OPENAI_CONTAINER_API_VERSION", "preview", _api_version,
    "the `api-version` sent on the container routes (listing a container's files, downloading one): `preview`, "
    "the only value they accept today (a dated one answers 400). The responses routes send none (v1)",
)
TIMEOUT = Setting(
    "AZURE_OPENAI_TIMEOUT_SECONDS", float(DEFAULT_UPSTREAM_CALL_SECONDS), _upstream_timeout,
    f"per call, at most {MAX_UPSTREAM_CALL_SECONDS} (an HTTP request is cut off at {HTTP_REQUEST_LIMIT_SECONDS} s); "
    "downloads wait at most 60 s between reads",
)
HOST_STORAGE = Setting(
    "AzureWebJobsStorage", None, _text,
    "the host's storage: the queues (the triggers listen there and the app sends there), and the artifact store "
    "unless `ARTIFACTS_STORAGE_CONNECTION` is set. `UseDevelopmentStorage=true` means Azurite",
    required="yes*", example="UseDevelopmentStorage=true",
)
CLIENT_ID = Setting(
    "AZURE_CLIENT_ID", None, _text,
    "client id of a user-assigned managed identity for Entra ID. In Azure (`infra/`): the app's identity, "
    "for Azure OpenAI tokens",
)
BLOB_SERVICE_URI = Setting(
    "AzureWebJobsStorage__blobServiceUri", None, _text,
    "identity-based host storage instead of `AzureWebJobsStorage`: `https://<account>.blob.core.windows.net/`. "
    "Also the artifact store (unless `ARTIFACTS_STORAGE_CONNECTION`)",
    required="*or this",
)
QUEUE_SERVICE_URI = Setting(
    "AzureWebJobsStorage__queueServiceUri", None, _text,
    "`https://<account>.queue.core.windows.net/`: the queue triggers, and the app's own sends",
    required="with it",
)
ACCOUNT_NAME = Setting(
    "AzureWebJobsStorage__accountName", None, _text,
    "the storage account's name: the short form of the two service URIs above (`https://<name>.blob…`, "
    "`https://<name>.queue…`)",
)
STORAGE_CREDENTIAL = Setting(
    "AzureWebJobsStorage__credential", None, _text,
    "`managedidentity`; leave out locally (your `az login` identity is used)",
    required="in Azure", read_by="host",
)
STORAGE_CLIENT_ID = Setting(
    "AzureWebJobsStorage__clientId", None, _text,
    "client id of the user-assigned identity, for the host and the artifact writer; leave out locally",
    required="in Azure",
)
APPINSIGHTS_CONNECTION = Setting(
    "APPLICATIONINSIGHTS_CONNECTION_STRING", None, _text,
    "telemetry to Application Insights (the host, the worker and the app's own spans and metrics)",
    required="no (host)", read_by="telemetry",
)
APPINSIGHTS_AUTHENTICATION = Setting(
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING", None, _text,
    "in Azure `ClientId=<client id>;Authorization=AAD`, as local auth is disabled",
    required="no (host)", read_by="host",
)
OTLP_ENDPOINT = Setting(
    "OTEL_EXPORTER_OTLP_ENDPOINT", None, _text,
    "also export traces (and, without Application Insights, metrics) to this OTLP/HTTP collector",
    read_by="telemetry",
)
ARTIFACTS_STORAGE = Setting(
    "ARTIFACTS_STORAGE_CONNECTION", None, _text,
    "a separate storage account (connection string) for the artifacts",
)
ARTIFACTS_QUEUE = Setting(
    "ARTIFACTS_QUEUE", "artifact-downloads", str,
    "one message per file. Queue names are read when the app loads (bindings are fixed then), at most "
    f"{_MAX_QUEUE_NAME} characters (the poison queue appends `{POISON_SUFFIX}`), all distinct",
    example="artifact-downloads",
)
RUNS_QUEUE = Setting("ARTIFACTS_RUNS_QUEUE", "artifact-runs", str, "the run watcher's messages",
                     example="artifact-runs")
EVENTS_QUEUE = Setting("ARTIFACTS_EVENTS_QUEUE", "artifact-events", str,
                       "one completion event per run, for downstream consumers", example="artifact-events")
EVENT_SOURCE = Setting(
    "ARTIFACTS_EVENT_SOURCE", "/code-interpreter-artifacts", _event_source,
    "the completion event's CloudEvents `source`: a URI-reference naming this deployment (with `type` and `id` it "
    "identifies an event). infra/ writes its `eventSource` parameter",
)
EVENT_GRID_ENDPOINT = Setting(
    "ARTIFACTS_EVENT_GRID_ENDPOINT", None, _event_grid_endpoint,
    "also publish each completion event to this Event Grid topic (CloudEvents 1.0 input schema), "
    "`https://<topic>.<region>-1.eventgrid.azure.net/api/events`, with the app's identity (`AZURE_CLIENT_ID`; "
    "the EventGrid Data Sender role on the topic), never a key. A failed publish is retried until it succeeds. "
    "infra/ writes it when `eventGridEnabled` is on ([contracts.md](contracts.md#event-grid-delivery))",
)
BACKGROUND = Setting(
    "AZURE_OPENAI_BACKGROUND", True, _flag,
    "`false` creates runs inside the request (for deployments that refuse background mode); the rest is the same",
    example="true",
)
RUN_MAX_HOURS = Setting(
    "ARTIFACTS_RUN_MAX_HOURS", 6.0, _positive_float,
    "a run still unfinished (or with files still pending) after this is given up, with its event",
)
POLL_MIN = Setting(
    "ARTIFACTS_POLL_MIN_SECONDS", 2, _whole_seconds,
    f"the watcher's first delay; it doubles up to the next one ({MIN_POLL_SECONDS} to "
    f"{QUEUE_MAX_VISIBILITY_SECONDS}: 0 would poll in a hot loop, and is refused)",
)
POLL_MAX = Setting("ARTIFACTS_POLL_MAX_SECONDS", 30, _whole_seconds, "the watcher's longest delay between looks")
CONTAINER = Setting("ARTIFACTS_CONTAINER", "artifacts", _container_name, "the artifact blobs",
                    example="artifacts")
STATUS_CONTAINER = Setting("ARTIFACTS_STATUS_CONTAINER", "artifact-status", _container_name,
                           "run records, failure records, idempotency claims", example="artifact-status")
INPUT_CONTAINER = Setting(
    "ARTIFACTS_INPUT_CONTAINER", None, _container_name,
    "the container a POST's `input_blobs` are read from (in the artifact store's account); unset: `input_blobs` "
    "is refused. With Easy Auth on, a caller names blobs under their own prefix `{owner}/` only "
    "([security.md](security.md))",
    example="artifact-inputs",
)
def _input_bytes(raw: str) -> int:
    value = _positive_int(raw)
    if value > OPENAI_FILE_MAX_BYTES:
        raise ValueError(f"must be at most {OPENAI_FILE_MAX_BYTES} (the files API's limit per file)")
    return value


INPUT_MAX_BYTES = Setting(
    "ARTIFACTS_INPUT_MAX_BYTES", DEFAULT_INPUT_BLOB_BYTES, _input_bytes,
    f"the largest input blob a POST may name (`input_blobs`), at most {OPENAI_FILE_MAX_BYTES} (the files API's "
    "limit); larger: 413",
    shown_default=f"`{DEFAULT_INPUT_BLOB_BYTES}` (100 MiB)",
)
INPUT_MAX_TOTAL_BYTES = Setting(
    "ARTIFACTS_INPUT_MAX_TOTAL_BYTES", DEFAULT_INPUT_TOTAL_BYTES, _positive_int,
    "the input blobs of one POST together; more: 413 (all are uploaded within the POST's time)",
    shown_default=f"`{DEFAULT_INPUT_TOTAL_BYTES}` (200 MiB)",
)
MAX_FILE_BYTES = Setting("ARTIFACTS_MAX_FILE_BYTES", 4 * 1024**3, _positive_int,
                         "larger files are recorded as `too_large`", shown_default="`4294967296` (4 GiB)")
DOWNLOAD_ATTEMPTS = Setting("ARTIFACTS_DOWNLOAD_ATTEMPTS", 4, _positive_int,
                            "download attempts per delivery; the queue redelivers up to `maxDequeueCount` times")
WEBHOOK_SECRET = Setting(
    "AZURE_OPENAI_WEBHOOK_SECRET", None, _webhook_secret,
    "the webhook endpoint's signing secret (`whsec_…`); in Azure a Key Vault reference. Unset, or a reference "
    "not resolved yet: every delivery is refused (401)",
    required="for webhooks", example="",
)
WEBHOOK_CAPTURE = Setting(
    "ARTIFACTS_WEBHOOK_CAPTURE", WEBHOOK_CAPTURE_MODES[0], _capture_mode,
    "`started`: webhooks wake only runs the app follows; `all`: every ended code-interpreter run on the "
    "resource is persisted",
    example="started",
)
WEBHOOK_SECRET_PREVIOUS = Setting(
    "AZURE_OPENAI_WEBHOOK_SECRET_PREVIOUS", None, _webhook_secret,
    "during a rotation, the signing secret being replaced: while `AZURE_OPENAI_WEBHOOK_SECRET` is set too, "
    "deliveries signed with either are accepted, until this is removed. In Azure a Key Vault reference",
)
REQUIRE_EASY_AUTH = Setting(
    "ARTIFACTS_REQUIRE_EASY_AUTH", False, _flag,
    "`true` (infra/ writes it with Easy Auth): if the platform ever reports Easy Auth off, every caller route "
    "answers 503 instead of letting every function key holder in with every right",
)
CALLER_ROLE = Setting(
    "ARTIFACTS_CALLER_ROLE", "Artifacts.Caller", _role_name,
    "with Easy Auth on, the app role a caller's token must carry (its `roles` claim); a token without it gets "
    "403. Assign it to the users, groups or applications that may call ([deploy.md](deploy.md))",
)
IMPORT_ROLE = Setting(
    "ARTIFACTS_IMPORT_ROLE", "Artifacts.Import", _role_name,
    "with Easy Auth on, the app role that lets a caller import a response the app did not start for them, and "
    "see the runs a webhook captured (they have no owner). Grant it on purpose",
)
ALLOWED_MODELS = Setting(
    "ARTIFACTS_ALLOWED_MODELS", "", _deployment_names,
    "other deployments a POST's `model` may name, separated by commas, beside `AZURE_OPENAI_DEPLOYMENT` (always "
    "allowed); empty: only that one",
)
IMAGE_DEPLOYMENT = Setting(
    "AZURE_OPENAI_IMAGE_DEPLOYMENT", "", _image_deployment,
    "the image model deployment (e.g. `gpt-image-1`) the `image_generation` tool uses: sent as the "
    "`x-ms-oai-image-generation-deployment` header on a run that asks for the tool (`\"image_generation\"` in "
    "the POST); empty: such a POST is refused (400)",
)
LINK_MINUTES = Setting(
    "ARTIFACTS_LINK_MINUTES", 60, _link_minutes,
    f"lifetime of the download links in the status API and the event, at most {MAX_LINK_MINUTES} "
    f"({MAX_LINK_MINUTES // (24 * 60)} days)",
    example="60",
)
EASY_AUTH = Setting(
    "WEBSITE_AUTH_ENABLED", False, lambda raw: raw.lower() == "true",
    "`true` when Easy Auth is on: only then are the caller headers trusted. Never set it yourself",
    required="set by the platform",
)
MAX_FILES_PER_RUN = Setting(
    "ARTIFACTS_MAX_FILES_PER_RUN", 1000, _positive_int,
    "a run that made more is capped: the first ones are persisted, and the status and the event carry a warning "
    "(so every message, record and event stays bounded)",
)
WORKER_RUNTIME = Setting(
    "FUNCTIONS_WORKER_RUNTIME", "python", str,
    "the language worker `func start` starts; in Azure, Flex Consumption sets the runtime itself (not an app "
    "setting)",
    required="locally", read_by="local", example="python",
)
FEATURE_FLAGS = Setting("AzureWebJobsFeatureFlags", None, _text,
                        "`EnableWorkerIndexing` lets older local hosts index the v2 programming model",
                        read_by="local", example="EnableWorkerIndexing")
WORKER_OPENTELEMETRY = Setting(
    "PYTHON_ENABLE_OPENTELEMETRY", None, _text,
    "`true`: the worker streams OpenTelemetry logs and continues the host's trace",
    read_by="host", example="true",
)
WORKER_THREADS = Setting("PYTHON_THREADPOOL_THREAD_COUNT", None, _text,
                         "the worker's threads for synchronous functions (infra/ sets it)", read_by="host")

# Every setting, in the order of the docs' table.
SETTINGS: tuple[Setting[Any], ...] = (
    ENDPOINT, DEPLOYMENT, ALLOWED_MODELS, IMAGE_DEPLOYMENT, API_KEY, TOKEN_SCOPE, CONTAINER_API_VERSION, TIMEOUT,
    HOST_STORAGE,
    CLIENT_ID, BLOB_SERVICE_URI, QUEUE_SERVICE_URI, ACCOUNT_NAME, STORAGE_CREDENTIAL, STORAGE_CLIENT_ID,
    APPINSIGHTS_CONNECTION, APPINSIGHTS_AUTHENTICATION, OTLP_ENDPOINT, ARTIFACTS_STORAGE, ARTIFACTS_QUEUE, RUNS_QUEUE,
    EVENTS_QUEUE, EVENT_SOURCE, EVENT_GRID_ENDPOINT, BACKGROUND, RUN_MAX_HOURS, POLL_MIN, POLL_MAX, CONTAINER,
    STATUS_CONTAINER, INPUT_CONTAINER, INPUT_MAX_BYTES, INPUT_MAX_TOTAL_BYTES, MAX_FILE_BYTES,
    DOWNLOAD_ATTEMPTS, MAX_FILES_PER_RUN, WEBHOOK_SECRET, WEBHOOK_SECRET_PREVIOUS, WEBHOOK_CAPTURE, LINK_MINUTES,
    EASY_AUTH, REQUIRE_EASY_AUTH, CALLER_ROLE, IMPORT_ROLE, WORKER_RUNTIME, FEATURE_FLAGS, WORKER_OPENTELEMETRY,
    WORKER_THREADS,
)
# Every setting load_settings reads; the runtime rebuilds its clients only when one changes.
SETTING_NAMES = tuple(setting.name for setting in SETTINGS if setting.read_by == "app")


# --- What the app gets --------------------------------------------------------------------------


@dataclass(frozen=True)
class StorageSettings:
    """Where artifacts are written: a connection string, or an account URL reached by identity."""

    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None
    client_id: str | None = None  # user-assigned managed identity; None means DefaultAzureCredential's choice


@dataclass(frozen=True)
class QueueNames:
    """The queues the functions bind to: fixed when the app loads, like every binding."""

    artifacts: str = ARTIFACTS_QUEUE.default
    runs: str = RUNS_QUEUE.default
    events: str = EVENTS_QUEUE.default

    @staticmethod
    def poison(queue: str) -> str:
        return queue + POISON_SUFFIX


@dataclass(frozen=True)
class Settings:
    endpoint: str
    deployment: str
    api_key: str | None = field(repr=False)
    storage: StorageSettings
    queue_storage: StorageSettings  # always the host's own storage: the triggers listen there
    queues: QueueNames
    artifacts_container: str
    status_container: str
    timeout_seconds: float
    max_file_bytes: int = MAX_FILE_BYTES.default
    download_attempts: int = DOWNLOAD_ATTEMPTS.default
    max_files_per_run: int = MAX_FILES_PER_RUN.default
    client_id: str | None = None
    background: bool = BACKGROUND.default  # create runs with background: true
    run_max_seconds: float = RUN_MAX_HOURS.default * 3600
    poll_min_seconds: int = POLL_MIN.default
    poll_max_seconds: int = POLL_MAX.default
    webhook_secret: str | None = field(default=None, repr=False)  # whsec_...; None: webhooks are refused
    webhook_secret_previous: str | None = field(default=None, repr=False)  # also accepted, during a rotation
    webhook_capture: str = WEBHOOK_CAPTURE.default  # one of WEBHOOK_CAPTURE_MODES
    link_minutes: int = LINK_MINUTES.default
    # App Service Authentication (Easy Auth) is on: the platform sets WEBSITE_AUTH_ENABLED, strips
    # X-MS-CLIENT-PRINCIPAL-* from outside requests and sets them itself. Off, they are not trusted.
    easy_auth: bool = False
    require_easy_auth: bool = False  # Easy Auth reported off is then an outage, not an open door
    caller_role: str = CALLER_ROLE.default
    import_role: str = IMPORT_ROLE.default
    allowed_models: tuple[str, ...] = ()  # the deployments a POST's model may name (load_settings: never empty)
    token_scope: str = TOKEN_SCOPE.default  # the Entra ID token's scope, when there is no key
    container_api_version: str = CONTAINER_API_VERSION.default  # api-version on the container routes
    image_deployment: str = ""  # the image_generation tool's deployment (its header); empty: the tool is refused
    input_container: str | None = None  # where input_blobs are read from; None: input_blobs refused
    input_max_bytes: int = INPUT_MAX_BYTES.default
    input_max_total_bytes: int = INPUT_MAX_TOTAL_BYTES.default
    event_source: str = EVENT_SOURCE.default  # the completion event's CloudEvents source
    event_grid_endpoint: str | None = None  # set: each completion event is also published to this topic

    @property
    def uses_entra_id(self) -> bool:
        return not self.api_key


def queue_names(env: Mapping[str, str] | None = None) -> QueueNames:
    """The queues the functions bind to. Read at import time because bindings are fixed then."""
    source = os.environ if env is None else env
    return QueueNames(*(source.get(queue.name, "").strip() or queue.default
                        for queue in (ARTIFACTS_QUEUE, RUNS_QUEUE, EVENTS_QUEUE)))


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting, collecting all problems before failing."""
    source = os.environ if env is None else env
    problems: list[str] = []

    def read(setting: Setting[T]) -> T:
        return setting.read(source, problems)

    # Read in the order an operator sets them up: the model, the queues and containers, the limits,
    # the storage, the webhooks, the links, the callers.
    endpoint, deployment, api_key = read(ENDPOINT), read(DEPLOYMENT), read(API_KEY)
    token_scope, container_api_version = read(TOKEN_SCOPE), read(CONTAINER_API_VERSION)
    queues = queue_names(source)
    _check_queue_names(queues, problems)
    container, status_container = read(CONTAINER), read(STATUS_CONTAINER)
    if _raw(source, CONTAINER) == _raw(source, STATUS_CONTAINER):
        problems.append(f"{STATUS_CONTAINER.name} must differ from {CONTAINER.name}")
    input_container = read(INPUT_CONTAINER)
    if input_container is not None and input_container in (container, status_container):
        problems.append(f"{INPUT_CONTAINER.name} must differ from {CONTAINER.name} and {STATUS_CONTAINER.name}")
    timeout, max_file_bytes = read(TIMEOUT), read(MAX_FILE_BYTES)
    attempts, max_files, background = read(DOWNLOAD_ATTEMPTS), read(MAX_FILES_PER_RUN), read(BACKGROUND)
    run_max_hours, poll_min, poll_max = read(RUN_MAX_HOURS), read(POLL_MIN), read(POLL_MAX)
    if poll_max < poll_min:
        problems.append(f"{POLL_MAX.name} must not be less than {POLL_MIN.name}")
    storage, queue_storage = _artifact_storage(source, problems), _host_storage(source, "queue", problems)
    settings = Settings(
        endpoint=endpoint,
        deployment=deployment,
        api_key=api_key,
        storage=storage,
        queue_storage=queue_storage,
        queues=queues,
        artifacts_container=container,
        status_container=status_container,
        timeout_seconds=timeout,
        max_file_bytes=max_file_bytes,
        download_attempts=attempts,
        max_files_per_run=max_files,
        client_id=read(CLIENT_ID),
        background=background,
        run_max_seconds=run_max_hours * 3600,
        poll_min_seconds=poll_min,
        poll_max_seconds=poll_max,
        webhook_secret=read(WEBHOOK_SECRET),
        webhook_secret_previous=read(WEBHOOK_SECRET_PREVIOUS),
        webhook_capture=read(WEBHOOK_CAPTURE),
        link_minutes=read(LINK_MINUTES),
        easy_auth=read(EASY_AUTH),
        require_easy_auth=read(REQUIRE_EASY_AUTH),
        caller_role=read(CALLER_ROLE),
        import_role=read(IMPORT_ROLE),
        allowed_models=tuple(dict.fromkeys([deployment, *filter(None, read(ALLOWED_MODELS).split(","))])),
        token_scope=token_scope,
        container_api_version=container_api_version,
        image_deployment=read(IMAGE_DEPLOYMENT),
        input_container=input_container,
        input_max_bytes=read(INPUT_MAX_BYTES),
        input_max_total_bytes=read(INPUT_MAX_TOTAL_BYTES),
        event_source=read(EVENT_SOURCE),
        event_grid_endpoint=read(EVENT_GRID_ENDPOINT),
    )
    if problems:
        raise ConfigError(problems)
    return settings


def _raw(source: Mapping[str, str], setting: Setting[Any]) -> str:
    """What the environment says, or the default as text: for checks across settings."""
    return source.get(setting.name, "").strip() or str(setting.default)


def _check_queue_names(queues: QueueNames, problems: list[str]) -> None:
    named = ((ARTIFACTS_QUEUE, queues.artifacts), (RUNS_QUEUE, queues.runs), (EVENTS_QUEUE, queues.events))
    for setting, value in named:
        if not _QUEUE_NAME.match(value):
            problems.append(
                f"{setting.name} is {value!r}: must be 3-{_MAX_QUEUE_NAME} lowercase letters, digits or "
                f"single hyphens (its poison queue appends {POISON_SUFFIX!r})"
            )
    every = [value for _, value in named]
    every += [QueueNames.poison(value) for value in every]
    if len(set(every)) != len(every):
        problems.append(f"{', '.join(setting.name for setting, _ in named[:-1])} and {named[-1][0].name} "
                        "must be distinct queues")


def _artifact_storage(source: Mapping[str, str], problems: list[str]) -> StorageSettings:
    """Artifacts go to ARTIFACTS_STORAGE_CONNECTION if set, else to the host's own storage."""
    dedicated = ARTIFACTS_STORAGE.read(source, problems)
    if dedicated:
        return StorageSettings(connection_string=_expand_connection_string(dedicated))
    return _host_storage(source, "blob", problems)


def _host_storage(source: Mapping[str, str], service: Literal["blob", "queue"], problems: list[str]) -> StorageSettings:
    """The host's own storage (AzureWebJobsStorage) for one service, ``blob`` or ``queue``."""
    connection = HOST_STORAGE.read(source, problems)
    if connection:
        return StorageSettings(connection_string=_expand_connection_string(connection))
    # Identity-based host storage: the same settings the Functions host reads.
    service_uri = (BLOB_SERVICE_URI if service == "blob" else QUEUE_SERVICE_URI).read(source, problems)
    account = ACCOUNT_NAME.read(source, problems)
    client_id = STORAGE_CLIENT_ID.read(source, problems)
    if service_uri:
        return StorageSettings(account_url=service_uri.rstrip("/"), client_id=client_id)
    if account:
        return StorageSettings(account_url=f"https://{account}.{service}.core.windows.net", client_id=client_id)
    problem = (
        f"{HOST_STORAGE.name} is not set (a connection string, 'UseDevelopmentStorage=true', "
        f"or AzureWebJobsStorage__{service}ServiceUri for managed identity)"
    )
    if not any(p.startswith(f"{HOST_STORAGE.name} is not set") for p in problems):
        problems.append(problem)
    return StorageSettings()


def _expand_connection_string(value: str) -> str:
    if value.replace(" ", "").lower().rstrip(";") == "usedevelopmentstorage=true":
        return _DEVELOPMENT_STORAGE
    return value
