"""A blob once whole is never written again, even by a delivery that overlaps the one that stored it.

Two deliveries of one file overlap (a redelivery after the visibility timeout, the same file queued
twice by racing steps): both look first and find nothing, one commits, and the other, whose
download was slower, arrives with the same bytes. It must complete without writing: the blob's
ETag and ``downloaded_at`` stay those of the first commit.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from shared.pipeline.persist import persist_message
from shared.runtime import build_runtime, get_runtime
from shared.settings import load_settings
from shared.storage.artifact_blobs import StoredBlob
from shared.storage.messages import ArtifactMessage
from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("size", "deliveries"),
    [(10 * MiB, 1), (10_000, 2)],
    ids=["large file, block list", "small file redelivered, single Put"],
)
def test_an_overlapping_delivery_never_writes_a_whole_blob_again(
    fake: FakeAzureOpenAI, app_env: AppEnv, size: int, deliveries: int
) -> None:
    file = FakeFile(os.urandom(size), "/mnt/data/twice.bin")
    container = fake.add_container(FakeContainer([file]))
    response_id = "resp_write_once"
    message = ArtifactMessage(
        response_id=response_id, container_id=container.container_id, file_id=file.file_id,
        filename="twice.bin", blob_name=f"{response_id}/{file.file_id}/twice.bin", size=size,
    ).to_json().encode()

    # The slow delivery looks first, finds nothing, and its download pauses before a block is staged.
    slow_body = fake.hold_next_download(after_bytes=1000)
    outcome: dict[str, Any] = {}

    def slow_delivery() -> None:
        try:
            outcome["stored"] = persist_message(get_runtime(), message, message_id="slow", dequeue_count=deliveries)
        except BaseException as error:  # reported by the assertion below
            outcome["error"] = error

    slow = threading.Thread(target=slow_delivery)
    slow.start()
    try:
        assert slow_body.paused.wait(timeout=30)
        # Meanwhile the other delivery (another instance) stores the file whole.
        first = persist_message(build_runtime(load_settings()), message, message_id="fast", dequeue_count=deliveries)
        assert first is not None and not first.already_present
        blob = app_env.artifacts().get_blob_client(first.blob_name)
        committed = blob.get_blob_properties()
    finally:
        slow_body.release()
        slow.join(timeout=120)
    assert not slow.is_alive()

    assert "error" not in outcome, repr(outcome.get("error"))
    late: StoredBlob = outcome["stored"]
    assert late.sha256 == first.sha256 and late.size == size
    after = blob.get_blob_properties()
    assert (after.etag, after.metadata["downloaded_at"]) == (committed.etag, committed.metadata["downloaded_at"]), (
        "the blob was written a second time"
    )
    assert late.already_present
    assert blob.download_blob().readall() == file.content


@pytest.mark.parametrize("size", [10 * MiB, 10_000], ids=["large file, block list", "small file, single Put"])
def test_a_blob_the_app_did_not_write_whole_is_replaced(fake: FakeAzureOpenAI, app_env: AppEnv, size: int) -> None:
    file = FakeFile(os.urandom(size), "/mnt/data/stray.bin")
    container = fake.add_container(FakeContainer([file]))
    message = ArtifactMessage(
        response_id="resp_stray", container_id=container.container_id, file_id=file.file_id,
        filename="stray.bin", blob_name=f"resp_stray/{file.file_id}/stray.bin", size=size,
    )
    app_env.artifacts().create_container()
    app_env.artifacts().upload_blob(message.blob_name, b"left by hand")  # no size or hash of the app's
    stored = persist_message(get_runtime(), message.to_json().encode(), message_id="m", dequeue_count=1)
    assert stored is not None and not stored.already_present
    blob = app_env.artifacts().get_blob_client(message.blob_name)
    assert blob.download_blob().readall() == file.content
    assert blob.get_blob_properties().metadata["sha256"] == stored.sha256
