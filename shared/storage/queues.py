"""Sending queue messages from inside a function, encoded the way the host's triggers read them.

The app sends through the Storage SDK rather than output bindings: an output binding is written
only after the function returns, so it can neither carry a visibility delay (the run watcher's
schedule) nor tell the caller that the send failed (the POST must not answer success then).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueServiceClient, TextBase64EncodePolicy

FAN_OUT_THREADS = 16  # sends in flight when one run fans out many files
# Every message the app sends stands for a file, a run or an event: losing one loses it. Storage
# queues drop a message after 7 days unless told otherwise; -1 means it never expires.
NEVER_EXPIRES = -1


class QueueSender:
    def __init__(self, service: QueueServiceClient, *, base64_messages: bool) -> None:
        self._service = service
        self._base64 = base64_messages
        self._clients: dict[str, QueueClient] = {}
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def send(self, queue: str, text: str, *, delay_seconds: int = 0) -> None:
        """Send one message, visible after ``delay_seconds`` and kept until it is handled; creates the
        queue on first need."""
        client = self._client(queue)
        try:
            client.send_message(text, visibility_timeout=delay_seconds or None, time_to_live=NEVER_EXPIRES)
        except ResourceNotFoundError:
            self._create(client)
            client.send_message(text, visibility_timeout=delay_seconds or None, time_to_live=NEVER_EXPIRES)

    def send_many(self, queue: str, texts: Sequence[str]) -> None:
        """Send every message (a run's fan-out), several at a time; raises the first failure."""
        if len(texts) <= 1:
            for text in texts:
                self.send(queue, text)
            return
        with ThreadPoolExecutor(max_workers=min(FAN_OUT_THREADS, len(texts))) as pool:
            for future in [pool.submit(self.send, queue, text) for text in texts]:
                future.result()

    def client(self, queue: str) -> QueueClient:
        """The queue's client, encoding as the host's triggers decode (for reads too: the monitor)."""
        return self._client(queue)

    def _client(self, queue: str) -> QueueClient:
        client = self._clients.get(queue)
        if client is None:
            with self._lock:
                client = self._clients.get(queue)
                if client is None:
                    # UTF-8 then base64 when host.json's messageEncoding says so; else the text as is.
                    policy = TextBase64EncodePolicy() if self._base64 else None
                    client = self._service.get_queue_client(queue, message_encode_policy=policy)
                    self._clients[queue] = client
        return client

    def _create(self, client: QueueClient) -> None:
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
