"""The Functions host's own settings that the app's logic depends on, read as the host reads them.

host.json is the base; an app setting ``AzureFunctionsJobHost__<path>`` (``__`` separates the
levels, names are case-insensitive) overrides any value in it, the way the host's configuration
does. Read once per process: the host reads them once at start-up too.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST_JSON = Path(__file__).resolve().parents[1] / "host.json"
_OVERRIDE_PREFIX = "azurefunctionsjobhost__"

# The host's defaults when host.json says nothing.
DEFAULT_MAX_DEQUEUE_COUNT = 5
DEFAULT_VISIBILITY_TIMEOUT_SECONDS = 0.0
DEFAULT_FUNCTION_TIMEOUT_SECONDS = 30 * 60.0  # Flex Consumption's default
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?$")


@dataclass(frozen=True)
class HostSettings:
    max_dequeue_count: int  # deliveries before the host moves a message to the poison queue
    visibility_timeout_seconds: float  # how long a failed message waits before it is delivered again
    function_timeout_seconds: float | None  # None: unbounded (-1 in host.json)
    base64_messages: bool  # host.json messageEncoding: how queue messages are written


def parse_timespan(value: str) -> float | None:
    """``[d.]hh:mm:ss[.fff]`` as seconds; ``-1`` means unbounded (None)."""
    text = value.strip()
    if text == "-1":
        return None
    match = _TIMESPAN.match(text)
    if match is None:
        raise ValueError(f"{value!r} is not a time span like 00:10:00")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def read_host_settings(host_json: Mapping[str, Any], env: Mapping[str, str]) -> HostSettings:
    overrides = {name.lower()[len(_OVERRIDE_PREFIX):]: value for name, value in env.items()
                 if name.lower().startswith(_OVERRIDE_PREFIX)}

    def value(*path: str) -> Any:
        override = overrides.get("__".join(path).lower())
        if override is not None:
            return override
        node: Any = host_json
        for key in path:
            node = _get_ci(node, key)
        return node

    queues = ("extensions", "queues")
    max_dequeue = value(*queues, "maxDequeueCount")
    visibility = value(*queues, "visibilityTimeout")
    timeout = value("functionTimeout")
    encoding = value(*queues, "messageEncoding")
    return HostSettings(
        max_dequeue_count=int(max_dequeue) if max_dequeue is not None else DEFAULT_MAX_DEQUEUE_COUNT,
        visibility_timeout_seconds=(
            (parse_timespan(str(visibility)) or 0.0) if visibility is not None else DEFAULT_VISIBILITY_TIMEOUT_SECONDS
        ),
        function_timeout_seconds=(
            parse_timespan(str(timeout)) if timeout is not None else DEFAULT_FUNCTION_TIMEOUT_SECONDS
        ),
        base64_messages=str(encoding or "base64").lower() == "base64",
    )


# The overrides of the values above, as app settings: part of what the runtime is built from.
OVERRIDE_SETTINGS = (
    "AzureFunctionsJobHost__functionTimeout",
    "AzureFunctionsJobHost__extensions__queues__maxDequeueCount",
    "AzureFunctionsJobHost__extensions__queues__visibilityTimeout",
    "AzureFunctionsJobHost__extensions__queues__messageEncoding",
)


def host_settings() -> HostSettings:
    """This app's host settings: host.json beside the app, with the environment's overrides.

    Read when the runtime is built (once per process in Azure), like the host reads them."""
    try:
        document = json.loads(HOST_JSON.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        document = {}
    return read_host_settings(document if isinstance(document, dict) else {}, os.environ)


def _get_ci(node: Any, key: str) -> Any:
    """A key of a JSON object, matched case-insensitively as the host's configuration does."""
    if not isinstance(node, dict):
        return None
    for name, item in node.items():
        if name.lower() == key.lower():
            return item
    return None
