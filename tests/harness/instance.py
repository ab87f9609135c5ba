"""One app instance, a process of its own: ``python -m tests.harness.instance --journal PATH --name NAME``.

The app's settings come from the environment the harness gives it (Azurite behind the fault
proxy, the fake Azure OpenAI, the session's queues, short host timings). It runs:

- every queue-triggered function under the host's semantics, through bench/queue_host.py's
  listener (batchSize/newBatchThreshold, leases renewed while a function runs, failures made
  visible again after visibilityTimeout, poison after maxDequeueCount), invoked in this process
  as the Python worker would (the process is what the harness kills and pauses);
- the HTTP functions behind tests/support/http_front.py (the host's function key is enforced).

It prints one JSON line, ``{"http": URL}``, once it serves, and runs until killed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from azure.functions.queue import QueueMessage as WorkerQueueMessage
from azure.storage.queue import ExponentialRetry, QueueServiceClient

from bench.queue_host import Invocation, QueueSettings, listeners
from shared.host_settings import host_settings
from tests.harness.journal import JournalWriter
from tests.support.host import FunctionsHost, load_host_json
from tests.support.http_front import serve_http


class InProcessInvoker:
    """Calls the user function on a listener thread, journaling each delivery's start and end."""

    def __init__(self, host: FunctionsHost, journal: JournalWriter) -> None:
        self._host = host
        self._journal = journal

    def invoke(self, function: str, body: bytes, *, message_id: str, dequeue_count: int, receipt: str) -> Invocation:
        info = self._host.functions[function]
        trigger = info.binding("queueTrigger")
        assert trigger is not None
        response_id, seq = _ids(body)
        # seq: the watcher's step number; None on a wake-up (import, webhook, cancel) or a file.
        self._journal.write("start", fn=function, mid=message_id, dq=dequeue_count, rid=response_id, seq=seq)
        message = WorkerQueueMessage(  # type: ignore[no-untyped-call]
            id=message_id, body=body, dequeue_count=dequeue_count, pop_receipt=receipt
        )
        start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_THREAD)
        ok = True
        try:
            info.call(**{trigger.name: message})
        except Exception as error:  # the host logs it and lets the message come back
            ok = False
            logging.getLogger("harness.instance").warning(
                "%s failed on %s (delivery %s): %s: %s", function, response_id, dequeue_count,
                type(error).__name__, str(error)[:300])
        after = resource.getrusage(resource.RUSAGE_THREAD)
        self._journal.write("end", fn=function, mid=message_id, dq=dequeue_count, rid=response_id, ok=ok)
        return Invocation(ok, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, 0,
                          time.perf_counter() - start)


def _ids(body: bytes) -> tuple[str | None, int | None]:
    """The message's response id and watcher step (``seq``), for the journal."""
    try:
        document: Any = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(document, dict):
        return None, None
    value, seq = document.get("response_id"), document.get("seq")
    return (value if isinstance(value, str) else None), (seq if isinstance(seq, int) else None)


def queue_settings() -> QueueSettings:
    """host.json's batching, with the app settings' overrides the app itself reads (the harness
    shortens visibilityTimeout so a failed delivery comes back in about a second)."""
    queues: dict[str, Any] = load_host_json().get("extensions", {}).get("queues", {})
    overridden = host_settings()
    base = QueueSettings.from_host_json()
    return QueueSettings(
        batch_size=int(queues.get("batchSize", 16)),
        new_batch_threshold=int(queues.get("newBatchThreshold", 8)),
        max_polling_seconds=base.max_polling_seconds,
        visibility_timeout=max(1, int(overridden.visibility_timeout_seconds)),
        max_dequeue_count=overridden.max_dequeue_count,
        base64=overridden.base64_messages,
    )


def host_queue_service(connection_string: str) -> QueueServiceClient:
    # The host's own Storage client gives up a request quickly and polls again, rather than
    # waiting out the SDK's 15-second first back-off while Storage is failing.
    retry = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=1, random_jitter_range=1)
    return QueueServiceClient.from_connection_string(connection_string, retry_policy=retry)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.instance")
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument("--lease-seconds", type=int, default=3)
    args = parser.parse_args(argv)
    # HARNESS_LOG_LEVEL=INFO when replaying a seed: the app's own lines (webhooks, captures, steps).
    level = getattr(logging, os.environ.get("HARNESS_LOG_LEVEL", "WARNING").upper(), logging.WARNING)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    import function_app  # noqa: PLC0415 - loaded under the environment the harness gave this process

    connection = os.environ["AzureWebJobsStorage"]  # noqa: SIM112 - the host's own setting name
    host = FunctionsHost(function_app.app, connection)
    journal = JournalWriter(args.journal)
    invoker = InProcessInvoker(host, journal)
    for listener in listeners(host.functions, host_queue_service(connection), queue_settings(), invoker,
                              lease_seconds=args.lease_seconds, observer=journal).values():
        listener.start()
    with serve_http(host) as url:
        journal.write("ready", http=url)
        print(json.dumps({"http": url}), flush=True)
        threading.Event().wait()  # until killed


if __name__ == "__main__":
    main()
