"""Every error the app raises on purpose, in one tree.

::

    AppError
    ├── ConfigError              settings missing or malformed; names each one (ValueError)
    ├── Refusal                  ends an HTTP request early with a JSON error answer
    ├── InvalidInput             input from outside that can never be used (ValueError)
    │   ├── InvalidRequest         an HTTP body; each problem names its field (400, 413)
    │   └── InvalidMessage         a queue message: recorded as failed, never retried
    ├── TransientError           worth trying again; ``retry_after`` is the server's hint
    │   ├── TransientUpstreamError   (also an UpstreamError, below)
    │   ├── DeliveryTimeUp         a delivery used its share of functionTimeout
    │   ├── SizeMismatchError      fewer or more bytes than announced arrived
    │   ├── ConcurrentWriteError   another delivery is writing the same blob
    │   └── ContainerMissingError  the blob container vanished while the app ran
    ├── UpstreamError            Azure OpenAI answered with an error (``status``, ``detail``)
    │   ├── TransientUpstreamError 429 or 5xx: try again later
    │   ├── FileGoneError          404, or 400 "Container is expired.": permanent
    │   └── ResponseNotFound       no such response on the resource
    ├── CreateOutcomeUnknown     a create's answer was lost: a run may have started
    ├── TooLargeError            the file is over ARTIFACTS_MAX_FILE_BYTES: permanent
    ├── RecordConflict           another instance changed the run record first
    ├── RecordMissing            the run record is gone
    └── IdempotencyError         an ``Idempotency-Key`` that cannot start a run now
        ├── KeyReused              used before with another body (422)
        ├── KeyInFlight            its request is still starting the run (409)
        └── KeyOutcomeUnknown      its run may have started, id unknown (409)

Catch the narrowest class that means what the handler does. ``UpstreamError`` includes the
transient ones: a handler that treats an upstream error as permanent catches
``TransientUpstreamError`` (or ``TransientError``) first. Standard library only: the settings
check loads the settings, and so this module, outside the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class AppError(Exception):
    """The root: anything else that escapes a function is a bug."""


class ConfigError(AppError, ValueError):
    """One or more settings are missing or malformed; the message names each of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid app settings: " + "; ".join(problems))


class Refusal(AppError):
    """Ends a request early with a JSON error answer: ``{"error": {"code", "message", **extra}}``."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


class InvalidInput(AppError, ValueError):
    """Input from outside the app that no retry can make usable."""


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field of a request body."""

    field: str
    problem: str


class InvalidRequest(InvalidInput):
    """The caller's body is wrong; each problem names its field."""

    def __init__(self, problems: list[FieldProblem], status: int = 400) -> None:
        self.problems = problems
        self.status = status
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))


class InvalidMessage(InvalidInput):
    """The queue message can never be processed: a permanent failure, recorded and not retried."""


class TransientError(AppError):
    """A failure worth trying again; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeliveryTimeUp(TransientError):
    """The delivery used its share of functionTimeout: stop now; the queue delivers the message again."""


class SizeMismatchError(TransientError):
    """Fewer or more bytes arrived than the server announced: the download is retried."""


class ConcurrentWriteError(TransientError):
    """Another delivery wrote this blob while ours did, and it is not whole yet: retried."""


class ContainerMissingError(TransientError):
    """The blob container disappeared while the app ran: retried after making it again."""


class UpstreamError(AppError):
    """Azure OpenAI answered with an error. ``detail`` is safe to show a caller."""

    def __init__(self, status: int, detail: dict[str, Any]) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"Azure OpenAI answered {status}: {detail.get('message', '')}")


class TransientUpstreamError(UpstreamError, TransientError):
    """429 or 5xx: try again later."""

    def __init__(self, status: int, detail: dict[str, Any], retry_after: float | None) -> None:
        UpstreamError.__init__(self, status, detail)
        self.retry_after = retry_after


class FileGoneError(UpstreamError):
    """The container or file no longer exists (404, or 400 "Container is expired.")."""


class ResponseNotFound(UpstreamError):
    """No response with that id on this resource (or it was created with ``store: false``)."""


class CreateOutcomeUnknown(AppError):
    """A create request may have reached Azure OpenAI and its answer was lost or unusable (a read
    timeout, a dropped connection, a 5xx, a body without JSON): a run may have started, and it
    must not be started again blindly. ``detail`` is safe to show a caller."""

    def __init__(self, reason: str, *, timed_out: bool, detail: dict[str, Any] | None = None) -> None:
        self.reason = reason
        self.timed_out = timed_out
        self.detail = detail or {}
        super().__init__(reason)


class TooLargeError(AppError):
    """The file is over the configured limit: a permanent failure, nothing is committed."""


class RecordConflict(AppError):
    """Another instance changed the run record first: this one's step is a duplicate."""


class RecordMissing(AppError):
    """The run record is gone (deleted by hand, or its container was): the run must be followed again."""


class IdempotencyError(AppError):
    """An ``Idempotency-Key`` that cannot start a run now."""


class KeyReused(IdempotencyError):
    """The key was used for a request with another body (HTTP 422)."""


class KeyInFlight(IdempotencyError):
    """The request that holds this key is still starting its run (HTTP 409, try again)."""


class KeyOutcomeUnknown(IdempotencyError):
    """The key's run may or may not have started, and nobody knows its id (HTTP 409): retrying
    with this key never starts another run."""
