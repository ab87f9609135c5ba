"""What every writer to a blob container shares: the container made once, JSON documents' content type."""

from __future__ import annotations

import contextlib
import threading

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContentSettings

# The records, claims and events the app keeps as blobs are JSON documents.
JSON_CONTENT = ContentSettings(content_type="application/json")


class ContainerGuard:
    """Creates a blob container once per process, on first use, instead of on every write."""

    def __init__(self, service: BlobServiceClient, name: str) -> None:
        self.client = service.get_container_client(name)
        self._ready = False
        self._lock = threading.Lock()

    def forget(self) -> None:
        """The container was found missing (deleted while running): create it on next use."""
        self._ready = False

    def ensure(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                with contextlib.suppress(ResourceExistsError):
                    self.client.create_container()
                self._ready = True
