"""One app instance, a process of its own: ``python -m tests.harness.instance --journal PATH --name NAME``.

The app's settings come from the environment the harness gives it (Azurite behind the fault
proxy, the fake Azure OpenAI, the session's queues, short host timings). It runs:

- every queue-triggered function under the host's semantics, through bench/queue_host.py's
  listener (batchSize/newBatchThreshold, leases renewed while a function runs, failures made
  visible again after visibilityTimeout, poison after maxDequeueCount), invoked in this process
  through the real worker library, as the host invokes it (tests/support/worker_invoker.py; the
  process is what the harness kills and pauses);
- the HTTP functions behind tests/support/http_front.py (the host's function key is enforced),
  through the same worker.

It prints one JSON line, ``{"http": URL}``, once it serves, and runs until killed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from azure.storage.queue import ExponentialRetry, QueueServiceClient

from bench.queue_host import Invocation, QueueSettings, listeners
from shared.host_settings import host_settings
from tests.harness.journal import JournalWriter
from tests.support.host import FunctionsHost, load_host_json
from tests.support.http_front import serve_http
from tests.support.worker_invoker import HostQueueMessage, Worker


class JournaledInvoker:
    """Hands each delivery to the worker in this process, journaling its start and end."""

    def __init__(self, worker: Worker, journal: JournalWriter) -> None:
        self._worker = worker
        self._journal = journal

    def invoke(self, function: str, message: HostQueueMessage) -> Invocation:
        response_id, seq = _ids(message.body)
        # seq: the watcher's step number; None on a wake-up (import, webhook, cancel) or a file.
        self._journal.write("start", fn=function, mid=message.id, dq=message.dequeue_count, rid=response_id, seq=seq)
        answer = self._worker.invoke_queue(function, message)
        if answer.error is not None:  # the host logs it and lets the message come back
            logging.getLogger("harness.instance").warning(
                "%s failed on %s (delivery %s): %s", function, response_id, message.dequeue_count,
                answer.error.message[:300])
        self._journal.write("end", fn=function, mid=message.id, dq=message.dequeue_count, rid=response_id,
                            ok=answer.ok)
        return Invocation.of(answer)


def _ids(body: str) -> tuple[str | None, int | None]:
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

    connection = os.environ["AzureWebJobsStorage"]  # noqa: SIM112 - the host's own setting name
    host = FunctionsHost(connection)  # the worker loads function_app.py under the harness's environment
    host.worker.measure_cpu()
    journal = JournalWriter(args.journal)
    invoker = JournaledInvoker(host.worker, journal)
    for listener in listeners(host.functions, host_queue_service(connection), queue_settings(), invoker,
                              lease_seconds=args.lease_seconds, observer=journal).values():
        listener.start()
    with serve_http(host) as url:
        journal.write("ready", http=url)
        print(json.dumps({"http": url}), flush=True)
        threading.Event().wait()  # until killed


if __name__ == "__main__":
    main()
