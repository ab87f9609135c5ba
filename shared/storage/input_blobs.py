"""The input container (ARTIFACTS_INPUT_CONTAINER): the blobs a POST's ``input_blobs`` names, read
with the app's own identity, a piece at a time.

Only this container is ever read, and only by a name checked by ``shared.api.run_request``; with
Easy Auth on, the name is under the caller's own prefix ``{owner}/`` (``blob_name``). A blob is
read in pieces of ``INPUT_CHUNK_BYTES`` (the client's first and every later ranged GET are that
large), so an upload holds at most one piece of it in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient


@dataclass(frozen=True)
class InputBlob:
    name: str  # as the caller named it
    blob_name: str  # in the container: under the owner's prefix when there is one
    size: int
    content_type: str
    etag: str


def blob_name(name: str, owner: str | None) -> str:
    """Where a caller's ``name`` is in the input container: their own prefix first, if they have one."""
    return name if owner is None else f"{owner}/{name}"


class InputBlobStore:
    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._container: ContainerClient = service.get_container_client(container)

    @property
    def container_name(self) -> str:
        return str(self._container.container_name)

    def find(self, name: str, owner: str | None) -> InputBlob | None:
        """The blob's properties; None when there is no such blob (or no such container)."""
        stored = blob_name(name, owner)
        try:
            properties = self._container.get_blob_client(stored).get_blob_properties()
        except ResourceNotFoundError:
            return None
        content_type = properties.content_settings.content_type or "application/octet-stream"
        return InputBlob(name, stored, int(properties.size), str(content_type), str(properties.etag))

    def chunks(self, blob: InputBlob) -> Iterator[bytes]:
        """The blob's bytes in pieces, as of the ETag ``find`` saw (a blob changed since fails)."""
        downloader = self._container.get_blob_client(blob.blob_name).download_blob(
            max_concurrency=1, etag=blob.etag, match_condition=MatchConditions.IfNotModified,
        )
        yield from downloader.chunks()
