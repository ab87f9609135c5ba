"""App settings: read from the environment once, validated, with errors that name the setting.

Secrets (the API key, connection strings) are kept out of ``repr`` so a logged
``Settings`` never leaks them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_QUEUE = "artifact-downloads"
DEFAULT_CONTAINER = "artifacts"
DEFAULT_STATUS_CONTAINER = "artifact-status"
DEFAULT_TIMEOUT_SECONDS = 200.0  # under the 230 s an HTTP-triggered function may hold a request
MAX_TIMEOUT_SECONDS = 220.0
DEFAULT_MAX_FILE_BYTES = 4 * 1024**3
DEFAULT_DOWNLOAD_ATTEMPTS = 4  # per delivery; the queue redelivers up to maxDequeueCount times

# Every setting this module reads; the runtime rebuilds its clients only when one changes.
SETTING_NAMES = (
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_DEPLOYMENT",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_TIMEOUT_SECONDS",
    "ARTIFACTS_MAX_FILE_BYTES",
    "ARTIFACTS_DOWNLOAD_ATTEMPTS",
    "AZURE_CLIENT_ID",
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__clientId",
    "ARTIFACTS_STORAGE_CONNECTION",
    "ARTIFACTS_QUEUE",
    "ARTIFACTS_CONTAINER",
    "ARTIFACTS_STATUS_CONTAINER",
)

# Storage naming rules: queues and containers share them (3-63, lowercase, digits, single hyphens).
_STORAGE_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")

# The Functions host understands this shorthand; the storage SDK does not, so it is expanded to
# Azurite's well-known development account (a published, non-secret key).
_DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


class ConfigError(ValueError):
    """One or more settings are missing or malformed; the message names each of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid app settings: " + "; ".join(problems))


@dataclass(frozen=True)
class StorageSettings:
    """Where artifacts are written: a connection string, or an account URL reached by identity."""

    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None
    client_id: str | None = None  # user-assigned managed identity; None means DefaultAzureCredential's choice


@dataclass(frozen=True)
class Settings:
    endpoint: str
    deployment: str
    api_key: str | None = field(repr=False)
    storage: StorageSettings
    queue_name: str
    artifacts_container: str
    status_container: str
    timeout_seconds: float
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    download_attempts: int = DEFAULT_DOWNLOAD_ATTEMPTS
    client_id: str | None = None

    @property
    def uses_entra_id(self) -> bool:
        return not self.api_key


def queue_name(env: Mapping[str, str] | None = None) -> str:
    """The queue both functions bind to. Read at import time because bindings are fixed then."""
    source = os.environ if env is None else env
    return source.get("ARTIFACTS_QUEUE", "").strip() or DEFAULT_QUEUE


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

    queue = queue_name(source)
    container = get("ARTIFACTS_CONTAINER") or DEFAULT_CONTAINER
    status_container = get("ARTIFACTS_STATUS_CONTAINER") or DEFAULT_STATUS_CONTAINER
    for name, value in (
        ("ARTIFACTS_QUEUE", queue),
        ("ARTIFACTS_CONTAINER", container),
        ("ARTIFACTS_STATUS_CONTAINER", status_container),
    ):
        if not _STORAGE_NAME.match(value):
            problems.append(
                f"{name} is {value!r}: must be 3-63 lowercase letters, digits or single hyphens"
            )
    if container == status_container:
        problems.append("ARTIFACTS_STATUS_CONTAINER must differ from ARTIFACTS_CONTAINER")

    timeout = _positive_float(get("AZURE_OPENAI_TIMEOUT_SECONDS"), DEFAULT_TIMEOUT_SECONDS,
                              "AZURE_OPENAI_TIMEOUT_SECONDS", problems)
    if timeout > MAX_TIMEOUT_SECONDS:
        problems.append(f"AZURE_OPENAI_TIMEOUT_SECONDS must be at most {MAX_TIMEOUT_SECONDS:.0f} "
                        "(an HTTP request is cut off at 230 s)")
    max_file_bytes = _positive_int(get("ARTIFACTS_MAX_FILE_BYTES"), DEFAULT_MAX_FILE_BYTES,
                                   "ARTIFACTS_MAX_FILE_BYTES", problems)
    attempts = _positive_int(get("ARTIFACTS_DOWNLOAD_ATTEMPTS"), DEFAULT_DOWNLOAD_ATTEMPTS,
                             "ARTIFACTS_DOWNLOAD_ATTEMPTS", problems)
    storage = _storage_settings(source, problems)

    if problems:
        raise ConfigError(problems)
    return Settings(
        endpoint=endpoint,
        deployment=deployment,
        api_key=get("AZURE_OPENAI_API_KEY") or None,
        storage=storage,
        queue_name=queue,
        artifacts_container=container,
        status_container=status_container,
        timeout_seconds=timeout,
        max_file_bytes=max_file_bytes,
        download_attempts=attempts,
        client_id=get("AZURE_CLIENT_ID") or None,
    )


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
    path = parts.path.rstrip("/")
    for suffix in ("/openai/v1", "/openai"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return f"{parts.scheme}://{parts.netloc}{path}"


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


def _storage_settings(source: Mapping[str, str], problems: list[str]) -> StorageSettings:
    """Artifacts go to ARTIFACTS_STORAGE_CONNECTION if set, else to the host's own storage."""
    dedicated = source.get("ARTIFACTS_STORAGE_CONNECTION", "").strip()
    if dedicated:
        return StorageSettings(connection_string=_expand_connection_string(dedicated))
    host = source.get("AzureWebJobsStorage", "").strip()
    if host:
        return StorageSettings(connection_string=_expand_connection_string(host))
    # Identity-based host storage: the same settings the Functions host reads.
    blob_uri = source.get("AzureWebJobsStorage__blobServiceUri", "").strip()
    account = source.get("AzureWebJobsStorage__accountName", "").strip()
    client_id = source.get("AzureWebJobsStorage__clientId", "").strip() or None
    if blob_uri:
        return StorageSettings(account_url=blob_uri.rstrip("/"), client_id=client_id)
    if account:
        return StorageSettings(
            account_url=f"https://{account}.blob.core.windows.net", client_id=client_id
        )
    problems.append(
        "AzureWebJobsStorage is not set (a connection string, 'UseDevelopmentStorage=true', "
        "or AzureWebJobsStorage__blobServiceUri for managed identity)"
    )
    return StorageSettings()


def _expand_connection_string(value: str) -> str:
    if value.replace(" ", "").lower().rstrip(";") == "usedevelopmentstorage=true":
        return _DEVELOPMENT_STORAGE
    return value
