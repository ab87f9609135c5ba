"""Bounded retries for transient failures, on tenacity.

Waits honour the server's ``retry-after-ms`` / ``Retry-After`` (capped) and otherwise back off
exponentially with full jitter, so a throttled fleet does not retry in lockstep.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass

import tenacity

from shared.errors import TransientError


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 20.0  # also the cap on a server's Retry-After

    def retrying(self, *retry_on: type[BaseException], deadline: float | None = None) -> tenacity.Retrying:
        """A ``Retrying`` that re-raises the last error once the attempts (or the time) are spent.

        ``deadline`` is a ``time.monotonic()`` value after which no new attempt starts.
        """
        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(self.attempts)
        if deadline is not None:
            stop = stop | tenacity.stop_before_delay(max(deadline - time.monotonic(), 0.0))
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(retry_on or (TransientError,)),
            stop=stop,
            wait=_ServerHintOrJitter(self.initial_wait, self.max_wait),
            reraise=True,
        )


class _ServerHintOrJitter(tenacity.wait.wait_base):
    def __init__(self, initial: float, cap: float) -> None:
        self._cap = cap
        self._jitter = tenacity.wait_random_exponential(multiplier=initial, max=cap)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        hint = getattr(error, "retry_after", None)
        if isinstance(hint, (int, float)) and hint >= 0:
            return min(float(hint), self._cap)
        return float(self._jitter(retry_state))


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Azure OpenAI sends ``retry-after-ms``; plain HTTP sends seconds or a date."""
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)
