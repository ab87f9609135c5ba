"""App settings: read from the environment once, validated, with errors that name the setting.

Secrets (the API key, connection strings) are kept out of ``repr`` so a logged
``Settings`` never leaks them.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shared.errors import ConfigError
from shared.limits import (
    DEFAULT_UPSTREAM_CALL_SECONDS,
    HTTP_REQUEST_LIMIT_SECONDS,
    MAX_LINK_MINUTES,
    MAX_UPSTREAM_CALL_SECONDS,
    QUEUE_MAX_VISIBILITY_SECONDS,
)

DEFAULT_QUEUE = "artifact-downloads"
DEFAULT_RUNS_QUEUE = "artifact-runs"
DEFAULT_EVENTS_QUEUE = "artifact-events"
POISON_SUFFIX = "-poison"  # the host's: a message that failed maxDequeueCount times moves there
DEFAULT_CONTAINER = "artifacts"
DEFAULT_STATUS_CONTAINER = "artifact-status"
DEFAULT_TIMEOUT_SECONDS = float(DEFAULT_UPSTREAM_CALL_SECONDS)
DEFAULT_MAX_FILE_BYTES = 4 * 1024**3
DEFAULT_DOWNLOAD_ATTEMPTS = 4  # per delivery; the queue redelivers up to maxDequeueCount times
DEFAULT_MAX_FILES_PER_RUN = 1000  # more are left out, with a warning: every message, record and event stays bounded
DEFAULT_RUN_MAX_HOURS = 6.0  # a run still unfinished after this is given up
DEFAULT_POLL_MIN_SECONDS = 2  # the run watcher's first delay; it doubles up to the maximum
DEFAULT_POLL_MAX_SECONDS = 30
MAX_POLL_SECONDS = QUEUE_MAX_VISIBILITY_SECONDS
MIN_POLL_SECONDS = 1  # 0 times any growth stays 0: the watcher would poll in a hot loop
DEFAULT_LINK_MINUTES = 60  # download links' lifetime
WEBHOOK_CAPTURE_MODES = ("started", "all")  # which ended responses a webhook makes the app persist
KEY_VAULT_REFERENCE_PREFIX = "@Microsoft.KeyVault("  # what App Service leaves in a setting it could not resolve

# Every setting this module reads; the runtime rebuilds its clients only when one changes.
SETTING_NAMES = (
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_DEPLOYMENT",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_TIMEOUT_SECONDS",
    "ARTIFACTS_MAX_FILE_BYTES",
    "ARTIFACTS_DOWNLOAD_ATTEMPTS",
    "ARTIFACTS_MAX_FILES_PER_RUN",
    "AZURE_CLIENT_ID",
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__clientId",
    "ARTIFACTS_STORAGE_CONNECTION",
    "AzureWebJobsStorage__queueServiceUri",
    "ARTIFACTS_QUEUE",
    "ARTIFACTS_RUNS_QUEUE",
    "ARTIFACTS_EVENTS_QUEUE",
    "AZURE_OPENAI_BACKGROUND",
    "ARTIFACTS_RUN_MAX_HOURS",
    "ARTIFACTS_POLL_MIN_SECONDS",
    "ARTIFACTS_POLL_MAX_SECONDS",
    "ARTIFACTS_CONTAINER",
    "ARTIFACTS_STATUS_CONTAINER",
    "AZURE_OPENAI_WEBHOOK_SECRET",
    "ARTIFACTS_WEBHOOK_CAPTURE",
    "ARTIFACTS_LINK_MINUTES",
    "WEBSITE_AUTH_ENABLED",
)

# Storage naming rules: queues and containers share them (3-63, lowercase, digits, single hyphens).
_STORAGE_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
# A queue's poison queue appends POISON_SUFFIX and must still be a valid name.
_QUEUE_NAME = re.compile(rf"^(?=.{{3,{63 - len(POISON_SUFFIX)}}}$)[a-z0-9]+(-[a-z0-9]+)*$")

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


@dataclass(frozen=True)
class StorageSettings:
    """Where artifacts are written: a connection string, or an account URL reached by identity."""

    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None
    client_id: str | None = None  # user-assigned managed identity; None means DefaultAzureCredential's choice


@dataclass(frozen=True)
class QueueNames:
    """The queues the functions bind to: fixed when the app loads, like every binding."""

    artifacts: str = DEFAULT_QUEUE
    runs: str = DEFAULT_RUNS_QUEUE
    events: str = DEFAULT_EVENTS_QUEUE

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
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    download_attempts: int = DEFAULT_DOWNLOAD_ATTEMPTS
    max_files_per_run: int = DEFAULT_MAX_FILES_PER_RUN
    client_id: str | None = None
    background: bool = True  # create runs with background: true (AZURE_OPENAI_BACKGROUND)
    run_max_seconds: float = DEFAULT_RUN_MAX_HOURS * 3600
    poll_min_seconds: int = DEFAULT_POLL_MIN_SECONDS
    poll_max_seconds: int = DEFAULT_POLL_MAX_SECONDS
    webhook_secret: str | None = field(default=None, repr=False)  # whsec_...; None: webhooks are refused
    webhook_capture: str = "started"  # one of WEBHOOK_CAPTURE_MODES
    link_minutes: int = DEFAULT_LINK_MINUTES
    # App Service Authentication (Easy Auth) is on: the platform sets WEBSITE_AUTH_ENABLED, strips
    # X-MS-CLIENT-PRINCIPAL-* from outside requests and sets them itself. Off, they are not trusted.
    easy_auth: bool = False

    @property
    def uses_entra_id(self) -> bool:
        return not self.api_key

    @property
    def queue_name(self) -> str:
        return self.queues.artifacts


def queue_names(env: Mapping[str, str] | None = None) -> QueueNames:
    """The queues the functions bind to. Read at import time because bindings are fixed then."""
    source = os.environ if env is None else env
    return QueueNames(
        artifacts=source.get("ARTIFACTS_QUEUE", "").strip() or DEFAULT_QUEUE,
        runs=source.get("ARTIFACTS_RUNS_QUEUE", "").strip() or DEFAULT_RUNS_QUEUE,
        events=source.get("ARTIFACTS_EVENTS_QUEUE", "").strip() or DEFAULT_EVENTS_QUEUE,
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting, collecting all problems before failing."""
    source = os.environ if env is None else env
    problems: list[str] = []

    def get(name: str) -> str:
        return source.get(name, "").strip()

    endpoint = _normalise_endpoint(get("AZURE_OPENAI_ENDPOINT"), problems)
    deployment = get("AZURE_OPENAI_DEPLOYMENT")
    if not deployment:
        problems.append("AZURE_OPENAI_DEPLOYMENT is not set (the model deployment name to call)")

    queues = queue_names(source)
    _check_queue_names(queues, problems)
    container = get("ARTIFACTS_CONTAINER") or DEFAULT_CONTAINER
    status_container = get("ARTIFACTS_STATUS_CONTAINER") or DEFAULT_STATUS_CONTAINER
    for name, value in (("ARTIFACTS_CONTAINER", container), ("ARTIFACTS_STATUS_CONTAINER", status_container)):
        if not _STORAGE_NAME.match(value):
            problems.append(
                f"{name} is {value!r}: must be 3-63 lowercase letters, digits or single hyphens"
            )
    if container == status_container:
        problems.append("ARTIFACTS_STATUS_CONTAINER must differ from ARTIFACTS_CONTAINER")

    timeout = _positive_float(get("AZURE_OPENAI_TIMEOUT_SECONDS"), DEFAULT_TIMEOUT_SECONDS,
                              "AZURE_OPENAI_TIMEOUT_SECONDS", problems)
    if timeout > MAX_UPSTREAM_CALL_SECONDS:
        problems.append(f"AZURE_OPENAI_TIMEOUT_SECONDS must be at most {MAX_UPSTREAM_CALL_SECONDS} "
                        f"(an HTTP request is cut off at {HTTP_REQUEST_LIMIT_SECONDS} s)")
    max_file_bytes = _positive_int(get("ARTIFACTS_MAX_FILE_BYTES"), DEFAULT_MAX_FILE_BYTES,
                                   "ARTIFACTS_MAX_FILE_BYTES", problems)
    attempts = _positive_int(get("ARTIFACTS_DOWNLOAD_ATTEMPTS"), DEFAULT_DOWNLOAD_ATTEMPTS,
                             "ARTIFACTS_DOWNLOAD_ATTEMPTS", problems)
    max_files = _positive_int(get("ARTIFACTS_MAX_FILES_PER_RUN"), DEFAULT_MAX_FILES_PER_RUN,
                              "ARTIFACTS_MAX_FILES_PER_RUN", problems)
    background = _flag(get("AZURE_OPENAI_BACKGROUND"), True, "AZURE_OPENAI_BACKGROUND", problems)
    run_max_hours = _positive_float(get("ARTIFACTS_RUN_MAX_HOURS"), DEFAULT_RUN_MAX_HOURS,
                                    "ARTIFACTS_RUN_MAX_HOURS", problems)
    poll_min = _whole_seconds(get("ARTIFACTS_POLL_MIN_SECONDS"), DEFAULT_POLL_MIN_SECONDS,
                              "ARTIFACTS_POLL_MIN_SECONDS", problems)
    poll_max = _whole_seconds(get("ARTIFACTS_POLL_MAX_SECONDS"), DEFAULT_POLL_MAX_SECONDS,
                              "ARTIFACTS_POLL_MAX_SECONDS", problems)
    if poll_max < poll_min:
        problems.append("ARTIFACTS_POLL_MAX_SECONDS must not be less than ARTIFACTS_POLL_MIN_SECONDS")
    storage = _storage_settings(source, problems)
    queue_storage = _host_storage_settings(source, "queue", problems)
    webhook_secret = _webhook_secret(get("AZURE_OPENAI_WEBHOOK_SECRET"), problems)
    webhook_capture = get("ARTIFACTS_WEBHOOK_CAPTURE").lower() or WEBHOOK_CAPTURE_MODES[0]
    if webhook_capture not in WEBHOOK_CAPTURE_MODES:
        problems.append(f"ARTIFACTS_WEBHOOK_CAPTURE must be one of {', '.join(WEBHOOK_CAPTURE_MODES)}")
    link_minutes = _positive_int(get("ARTIFACTS_LINK_MINUTES"), DEFAULT_LINK_MINUTES,
                                 "ARTIFACTS_LINK_MINUTES", problems)
    if link_minutes > MAX_LINK_MINUTES:
        problems.append(f"ARTIFACTS_LINK_MINUTES must be at most {MAX_LINK_MINUTES} (the signing key's longest life)")
    easy_auth = get("WEBSITE_AUTH_ENABLED").lower() == "true"

    if problems:
        raise ConfigError(problems)
    return Settings(
        endpoint=endpoint,
        deployment=deployment,
        api_key=get("AZURE_OPENAI_API_KEY") or None,
        storage=storage,
        queue_storage=queue_storage,
        queues=queues,
        artifacts_container=container,
        status_container=status_container,
        timeout_seconds=timeout,
        max_file_bytes=max_file_bytes,
        download_attempts=attempts,
        max_files_per_run=max_files,
        client_id=get("AZURE_CLIENT_ID") or None,
        background=background,
        run_max_seconds=run_max_hours * 3600,
        poll_min_seconds=poll_min,
        poll_max_seconds=poll_max,
        webhook_secret=webhook_secret,
        webhook_capture=webhook_capture,
        link_minutes=link_minutes,
        easy_auth=easy_auth,
    )


def _webhook_secret(raw: str, problems: list[str]) -> str | None:
    """The Standard Webhooks secret, or None when unset or a Key Vault reference not (yet) resolved.

    An unresolved reference is not a configuration error of the whole app: the secret may not be
    stored yet (the registration script writes it after provisioning). Webhooks are refused until then.
    """
    if not raw or raw.startswith(KEY_VAULT_REFERENCE_PREFIX):
        return None
    encoded = raw.removeprefix("whsec_")
    try:
        usable = bool(base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True))
    except ValueError:
        usable = False
    if not usable:
        problems.append("AZURE_OPENAI_WEBHOOK_SECRET must be the endpoint's signing secret: whsec_ and base64")
        return None
    return raw


def _check_queue_names(queues: QueueNames, problems: list[str]) -> None:
    named = (
        ("ARTIFACTS_QUEUE", queues.artifacts),
        ("ARTIFACTS_RUNS_QUEUE", queues.runs),
        ("ARTIFACTS_EVENTS_QUEUE", queues.events),
    )
    for name, value in named:
        if not _QUEUE_NAME.match(value):
            problems.append(
                f"{name} is {value!r}: must be 3-{63 - len(POISON_SUFFIX)} lowercase letters, digits or "
                f"single hyphens (its poison queue appends {POISON_SUFFIX!r})"
            )
    every = [value for _, value in named]
    every += [QueueNames.poison(value) for value in every]
    if len(set(every)) != len(every):
        problems.append("ARTIFACTS_QUEUE, ARTIFACTS_RUNS_QUEUE and ARTIFACTS_EVENTS_QUEUE must be distinct queues")


def _normalise_endpoint(raw: str, problems: list[str]) -> str:
    """Accept the resource URL with or without a trailing ``/openai`` or ``/openai/v1``."""
    if not raw:
        problems.append(
            "AZURE_OPENAI_ENDPOINT is not set (e.g. https://my-resource.openai.azure.com)"
        )
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append("AZURE_OPENAI_ENDPOINT must be an http(s) URL with a host name")
        return ""
    if parts.query or parts.fragment or parts.username or parts.password:
        problems.append("AZURE_OPENAI_ENDPOINT must not carry a query, fragment or credentials")
        return ""
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        problems.append(
            "AZURE_OPENAI_ENDPOINT must be https:// (plain http:// is allowed only for loopback: localhost, "
            "127.0.0.0/8 or ::1), or the API key or token would cross the network in cleartext"
        )
        return ""
    path = parts.path.rstrip("/")
    for suffix in ("/openai/v1", "/openai"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return f"{parts.scheme}://{parts.netloc}{path}"


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


def _positive_float(raw: str, default: float, name: str, problems: list[str]) -> float:
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        problems.append(f"{name} must be a positive number of seconds")
        return default
    return value


def _positive_int(raw: str, default: int, name: str, problems: list[str]) -> int:
    if not raw:
        return default
    if not raw.isdigit() or int(raw) == 0:
        problems.append(f"{name} must be a positive whole number")
        return default
    return int(raw)


def _flag(raw: str, default: bool, name: str, problems: list[str]) -> bool:
    if not raw:
        return default
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    problems.append(f"{name} must be true or false")
    return default


def _whole_seconds(raw: str, default: int, name: str, problems: list[str]) -> int:
    if not raw:
        return default
    if not raw.isdigit() or not MIN_POLL_SECONDS <= int(raw) <= MAX_POLL_SECONDS:
        problems.append(f"{name} must be a whole number of seconds from {MIN_POLL_SECONDS} to {MAX_POLL_SECONDS}")
        return default
    return int(raw)


def _storage_settings(source: Mapping[str, str], problems: list[str]) -> StorageSettings:
    """Artifacts go to ARTIFACTS_STORAGE_CONNECTION if set, else to the host's own storage."""
    dedicated = source.get("ARTIFACTS_STORAGE_CONNECTION", "").strip()
    if dedicated:
        return StorageSettings(connection_string=_expand_connection_string(dedicated))
    return _host_storage_settings(source, "blob", problems)


def _host_storage_settings(source: Mapping[str, str], service: str, problems: list[str]) -> StorageSettings:
    """The host's own storage (AzureWebJobsStorage) for one service, ``blob`` or ``queue``."""
    host = source.get("AzureWebJobsStorage", "").strip()
    if host:
        return StorageSettings(connection_string=_expand_connection_string(host))
    # Identity-based host storage: the same settings the Functions host reads.
    service_uri = source.get(f"AzureWebJobsStorage__{service}ServiceUri", "").strip()
    account = source.get("AzureWebJobsStorage__accountName", "").strip()
    client_id = source.get("AzureWebJobsStorage__clientId", "").strip() or None
    if service_uri:
        return StorageSettings(account_url=service_uri.rstrip("/"), client_id=client_id)
    if account:
        return StorageSettings(
            account_url=f"https://{account}.{service}.core.windows.net", client_id=client_id
        )
    problem = (
        "AzureWebJobsStorage is not set (a connection string, 'UseDevelopmentStorage=true', "
        f"or AzureWebJobsStorage__{service}ServiceUri for managed identity)"
    )
    if not any(p.startswith("AzureWebJobsStorage is not set") for p in problems):
        problems.append(problem)
    return StorageSettings()


def _expand_connection_string(value: str) -> str:
    if value.replace(" ", "").lower().rstrip(";") == "usedevelopmentstorage=true":
        return _DEVELOPMENT_STORAGE
    return value
