"""The app's one clock: every timestamp it writes is UTC, to the second, ISO 8601 with ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now, in UTC, as an aware datetime."""
    return datetime.now(UTC)


def utc_timestamp() -> str:
    """Now, in UTC, to the second: the form of every timestamp the app writes."""
    return utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")
