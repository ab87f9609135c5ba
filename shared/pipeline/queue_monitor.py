"""The queues' depth and the age of their oldest message, as metrics, once a minute.

A growing queue or an old message is the first sign of trouble: downloads slower than the
fan-out, a watcher that keeps failing, or anything at all in a poison queue. The alerts in
infra/ fire on these figures (``artifacts.queue.depth``, ``artifacts.queue.oldest_age_seconds``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.runtime import Runtime
from shared.settings import QueueNames
from shared.telemetry import queue_depth, queue_oldest_age

log = logging.getLogger(__name__)

MONITOR_SCHEDULE = "0 */1 * * * *"  # every minute (NCRONTAB, with seconds)


def _monitored_queues(queues: QueueNames) -> list[str]:
    """The app's queues, and the poison queues of the two it triggers on (the events queue is
    read by consumers, not by the app: the host never makes a poison queue for it)."""
    return [queues.artifacts, queues.runs, queues.events,
            QueueNames.poison(queues.artifacts), QueueNames.poison(queues.runs)]


def report_queue_depths(runtime: Runtime) -> dict[str, tuple[int, float | None]]:
    """Record, per queue, its approximate depth and the age in seconds of its first visible message."""
    figures: dict[str, tuple[int, float | None]] = {}
    now = datetime.now(UTC)
    for name in _monitored_queues(runtime.settings.queues):
        client = runtime.queues.client(name)
        try:
            depth = int(client.get_queue_properties().approximate_message_count or 0)
            oldest = next(iter(client.peek_messages(max_messages=1)), None)
        except ResourceNotFoundError:
            depth, oldest = 0, None  # not made yet: nothing ever went there
        except AzureError as error:
            log.warning("could not read queue %s: %s", name, type(error).__name__)
            continue
        age = (now - oldest.inserted_on).total_seconds() if oldest is not None and oldest.inserted_on else None
        figures[name] = (depth, age)
        queue_depth.set(depth, {"queue": name})
        queue_oldest_age.set(max(0.0, age or 0.0), {"queue": name})
        if depth and name.endswith(QueueNames.poison("")):
            log.warning("poison queue %s holds %d message(s)", name, depth, extra={"queue": name, "depth": depth})
    return figures
