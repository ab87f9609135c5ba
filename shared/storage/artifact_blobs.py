"""Streams an artifact into Blob Storage so that it is visible only when whole.

Large files are staged block by block while they download (a bounded number of blocks in
flight, so memory stays at about ``(concurrency + 1) * block_size``) and appear only when the
block list is committed, with the size and SHA-256 measured on the way in as metadata. A
download that breaks leaves uncommitted blocks, which Storage discards, never a partial blob.
Small files take a single Put Blob. Every write is conditional (``If-None-Match: *``, on the Put
and on the block list's commit alike): a blob once whole is never written again, whoever comes
second (a redelivery, a duplicate message, an overlapping delivery), and a refused write is also
the proof that the blob is already there.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock, BlobClient, BlobServiceClient, ContentSettings

from shared.clock import utc_timestamp
from shared.errors import ConcurrentWriteError, ContainerMissingError, SizeMismatchError, TooLargeError
from shared.storage.containers import ContainerGuard

DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
DEFAULT_BLOCK_CONCURRENCY = 4
RECENT_ARTIFACTS = 4096  # artifacts a process remembers storing: a duplicate message for one is checked first


@dataclass(frozen=True)
class StoredBlob:
    blob_name: str
    size: int
    sha256: str
    already_present: bool = False


class ArtifactStore:
    def __init__(
        self,
        service: BlobServiceClient,
        container: str,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        block_concurrency: int = DEFAULT_BLOCK_CONCURRENCY,
    ) -> None:
        self._container = ContainerGuard(service, container)
        self.block_size = block_size
        self._block_concurrency = block_concurrency
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._recent_lock = threading.Lock()

    def stored_here(self, response_id: str, file_id: str) -> bool:
        """Whether this process stored the artifact lately: a hint that a message is a duplicate,
        to be checked in Storage (the blob may have been deleted since), never trusted alone."""
        with self._recent_lock:
            return f"{response_id}/{file_id}/" in self._recent

    def _remember(self, blob_name: str) -> None:
        key = blob_name[: blob_name.rfind("/") + 1]  # "{response_id}/{file_id}/"
        with self._recent_lock:
            self._recent[key] = None
            self._recent.move_to_end(key)
            if len(self._recent) > RECENT_ARTIFACTS:
                self._recent.popitem(last=False)

    def find_whole(self, blob_name: str) -> StoredBlob | None:
        """The blob, if an earlier pass already stored it whole (its metadata proves it)."""
        try:
            properties = self._blob(blob_name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return _whole(blob_name, properties.size, properties.metadata)

    def find_artifact(self, response_id: str, file_id: str) -> StoredBlob | None:
        """The artifact's whole blob under whatever name an earlier message gave it."""
        return next(iter(self._list_whole(f"{response_id}/{file_id}/").values()), None)

    def artifacts_of(self, response_id: str) -> dict[str, StoredBlob]:
        """Every whole artifact of a run, by file id, in one listing (a page holds 5,000)."""
        return self._list_whole(f"{response_id}/")

    def _list_whole(self, prefix: str) -> dict[str, StoredBlob]:
        """Whole blobs under ``prefix`` (``{response_id}/...``), keyed by their file id segment."""
        try:
            listed = list(self._container.client.list_blobs(name_starts_with=prefix, include=["metadata"]))
        except ResourceNotFoundError:
            return {}
        found: dict[str, StoredBlob] = {}
        for blob in listed:
            stored = _whole(blob.name, blob.size, blob.metadata)
            parts = blob.name.split("/")
            if stored is not None and len(parts) == 3:
                found.setdefault(parts[1], stored)
        return found

    def write(
        self,
        blob_name: str,
        chunks: Iterable[bytes],
        *,
        metadata: dict[str, str],
        content_type: str,
        content_disposition: str,
        expected_size: int | None = None,
        max_size: int | None = None,
    ) -> StoredBlob:
        """Store ``chunks`` (each about ``block_size``) as one blob, adding size/sha256/downloaded_at.

        Nothing replaces a whole blob of that name: if one is there (stored by another delivery,
        even one that finished while this one downloaded), it is the result (``already_present``).
        """
        with self._remade_if_missing(blob_name):
            if expected_size is not None:
                _check_limit(expected_size, max_size)
            self._container.ensure()
            blob = self._blob(blob_name)
            settings = ContentSettings(content_type=content_type, content_disposition=content_disposition)
            stream = iter(chunks)
            first = next(stream, b"")
            second = next(stream, None)
            if second is None:  # one block's worth: a single Put Blob
                _check_limit(len(first), max_size)
                _check_size(len(first), expected_size)
                stored = self._put(blob, first, settings, metadata)
            else:
                size, digest, block_ids = self._stage_blocks(blob, _limited(_chain(first, second, stream), max_size))
                _check_size(size, expected_size)
                stored = self._commit(blob, block_ids, settings, _final_metadata(metadata, size, digest))
        self._remember(blob_name)
        return stored

    def _put(self, blob: BlobClient, data: bytes, settings: ContentSettings, metadata: dict[str, str]) -> StoredBlob:
        digest = hashlib.sha256(data).hexdigest()
        final = _final_metadata(metadata, len(data), digest)

        def put(conditions: dict[str, Any]) -> None:
            blob.upload_blob(data, overwrite=True, length=len(data), content_settings=settings, metadata=final,
                             **conditions)

        existing = self._write_once(blob, put)
        return existing if existing is not None else StoredBlob(blob.blob_name, len(data), digest)

    def _commit(
        self, blob: BlobClient, block_ids: list[str], settings: ContentSettings, metadata: dict[str, str]
    ) -> StoredBlob:
        blocks = [BlobBlock(block_id=block_id) for block_id in block_ids]

        def commit(conditions: dict[str, Any]) -> None:
            blob.commit_block_list(blocks, content_settings=settings, metadata=metadata, **conditions)

        try:
            existing = self._write_once(blob, commit)
        except HttpResponseError as error:
            if getattr(error, "error_code", None) != "InvalidBlockList":  # set by the storage SDK
                raise
            # A concurrent delivery committed first, and a commit discards every other
            # uncommitted block. If its blob is whole, the work is done.
            existing = self.find_whole(blob.blob_name)
            if existing is None:
                raise ConcurrentWriteError(f"{blob.blob_name} was committed concurrently and is not whole") from error
        if existing is not None:
            return existing
        return StoredBlob(blob.blob_name, int(metadata["size"]), metadata["sha256"])

    def _write_once(self, blob: BlobClient, write: Callable[[dict[str, Any]], None]) -> StoredBlob | None:
        """Run ``write`` (given its access conditions) only where it replaces no whole blob.

        It is made only if no blob has the name (``If-None-Match: *``); when one does, that blob
        is the answer if it is whole, and one the app did not write whole (no size and hash of its
        own) is replaced only while it is still that same blob (``If-Match``). None: written.
        """
        try:
            write({"match_condition": MatchConditions.IfMissing})
            return None
        except (ResourceExistsError, ResourceModifiedError):  # 409, or 412 ConditionNotMet: the same refusal
            pass
        try:
            properties = blob.get_blob_properties()
        except ResourceNotFoundError as error:  # deleted in between: the next attempt writes it
            raise ConcurrentWriteError(f"{blob.blob_name} disappeared while it was written") from error
        existing = _whole(blob.blob_name, properties.size, properties.metadata)
        if existing is not None:
            return existing
        try:
            write({"etag": properties.etag, "match_condition": MatchConditions.IfNotModified})
        except (ResourceModifiedError, ResourceExistsError) as error:
            raise ConcurrentWriteError(f"{blob.blob_name} was written concurrently") from error
        return None

    @contextlib.contextmanager
    def _remade_if_missing(self, blob_name: str) -> Iterator[None]:
        try:
            yield
        except ResourceNotFoundError as error:
            if getattr(error, "error_code", None) != "ContainerNotFound":
                raise
            self._container.forget()
            raise ContainerMissingError(f"the container of {blob_name} was deleted; it is made again") from error

    def _stage_blocks(self, blob: BlobClient, chunks: Iterator[bytes]) -> tuple[int, str, list[str]]:
        # Ids unique to this attempt, so a concurrent or earlier attempt's blocks never mix in.
        attempt = uuid.uuid4().hex
        hasher = hashlib.sha256()
        size = 0
        block_ids: list[str] = []
        in_flight: deque[Future[object]] = deque()
        with ThreadPoolExecutor(max_workers=self._block_concurrency) as pool:
            try:
                for index, chunk in enumerate(chunks):
                    hasher.update(chunk)
                    size += len(chunk)
                    block_id = f"{attempt}-{index:06d}"
                    block_ids.append(block_id)
                    in_flight.append(pool.submit(blob.stage_block, block_id, chunk, length=len(chunk)))
                    if len(in_flight) >= self._block_concurrency:
                        in_flight.popleft().result()
                while in_flight:
                    in_flight.popleft().result()
            except BaseException:
                for pending in in_flight:
                    pending.cancel()
                raise
        return size, hasher.hexdigest(), block_ids

    def _blob(self, blob_name: str) -> BlobClient:
        return self._container.client.get_blob_client(blob_name)


def _chain(first: bytes, second: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield second
    yield from rest


def _limited(chunks: Iterator[bytes], max_size: int | None) -> Iterator[bytes]:
    """Stop a stream that grows past the limit, whatever the server announced."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        _check_limit(total, max_size)
        yield chunk


def _check_limit(size: int, max_size: int | None) -> None:
    if max_size is not None and size > max_size:
        raise TooLargeError(f"the file has at least {size} bytes, over the limit of {max_size}")


def _whole(name: str, size: int | None, metadata: dict[str, str] | None) -> StoredBlob | None:
    digest = (metadata or {}).get("sha256")
    if not digest or size is None or (metadata or {}).get("size") != str(size):
        return None
    return StoredBlob(name, size, digest, already_present=True)


def _check_size(size: int, expected: int | None) -> None:
    if expected is not None and size != expected:
        raise SizeMismatchError(f"received {size} bytes, the server announced {expected}")


def _final_metadata(metadata: dict[str, str], size: int, digest: str) -> dict[str, str]:
    return {
        **metadata,
        "size": str(size),
        "sha256": digest,
        "downloaded_at": utc_timestamp(),
    }
