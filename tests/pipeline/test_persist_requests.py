"""Requests per persisted file, counted at the benchmarks' proxy in front of Azurite and the fake.

A first delivery of a small file costs one Azure OpenAI request (the download) and one Storage
request (a conditional Put Blob), plus, for a message from the fan-out, one more (a line appended
to the run's settle log) and, for the run's last file, the wake-up sent to the watcher. Whatever
may already be stored is looked up first: a redelivery, a message naming only the ids, an unsized
file, a duplicate this process has seen.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bench.latency_proxy import LatencyProxy
from shared.pipeline.persist import persist_message
from shared.runtime import Runtime, build_runtime, get_runtime
from shared.settings import load_settings
from shared.storage.messages import ArtifactMessage
from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile
from tests.support.azurite import ACCOUNT, Azurite


@dataclass
class Counted:
    proxy: LatencyProxy
    fake: FakeAzureOpenAI
    env: AppEnv

    def file(self, size: int = 10_000, name: str = "chart.png") -> tuple[FakeFile, ArtifactMessage]:
        """A file in a new container, and the message the fan-out would queue for it."""
        file = FakeFile(bytes(range(256)) * (size // 256) + b"x" * (size % 256), f"/mnt/data/{name}")
        container = self.fake.add_container(FakeContainer([file]))
        response_id = f"resp_{hashlib.sha256(file.file_id.encode()).hexdigest()[:24]}"
        message = ArtifactMessage(
            response_id=response_id, container_id=container.container_id, file_id=file.file_id,
            filename=name, blob_name=f"{response_id}/{file.file_id}/{name}", size=size,
        )
        return file, message

    def requests(self) -> dict[str, dict[str, int]]:
        """Requests by method per upstream since the last call."""
        counts = {route: dict(c["methods"]) for route, c in self.proxy.counts().items()}
        self.proxy.reset()
        return counts

    def blobs(self, prefix: str) -> dict[str, Any]:
        return {b.name: b for b in self.env.artifacts().list_blobs(name_starts_with=prefix, include=["metadata"])}


@pytest.fixture
def counted(
    app_env: AppEnv, azurite: Azurite, fake: FakeAzureOpenAI, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Counted]:
    fake_port = int(fake.endpoint.rsplit(":", 1)[1])
    upstreams = {"blob": ("127.0.0.1", azurite.blob_port), "queue": ("127.0.0.1", azurite.queue_port),
                 "openai": ("127.0.0.1", fake_port)}
    with LatencyProxy(upstreams, delay_ms=0) as proxy:
        blob, queue = proxy.port("blob"), proxy.port("queue")
        proxied = azurite.connection_string.replace(
            f"BlobEndpoint=http://127.0.0.1:{azurite.blob_port}/", f"BlobEndpoint=http://127.0.0.1:{blob}/"
        ).replace(f"QueueEndpoint=http://127.0.0.1:{azurite.queue_port}/", f"QueueEndpoint=http://127.0.0.1:{queue}/")
        assert f":{blob}/{ACCOUNT}" in proxied and f":{queue}/{ACCOUNT}" in proxied
        monkeypatch.setenv("AzureWebJobsStorage", proxied)
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", f"http://127.0.0.1:{proxy.port('openai')}")
        counted = Counted(proxy, fake, app_env)
        _, warm = counted.file(name="warm.png")
        assert persist_message(get_runtime(), warm.to_json().encode()) is not None  # the container, made once
        counted.requests()
        yield counted


def deliver(runtime: Runtime, message: ArtifactMessage | str, deliveries: int = 1) -> Any:
    body = message if isinstance(message, str) else message.to_json()
    return persist_message(runtime, body.encode(), message_id="m1", dequeue_count=deliveries)


def test_a_first_delivery_of_a_small_file_is_one_download_and_one_put(counted: Counted) -> None:
    file, message = counted.file()
    stored = deliver(get_runtime(), message)
    assert counted.requests() == {"blob": {"PUT": 1}, "queue": {}, "openai": {"GET": 1}}
    assert stored.sha256 == hashlib.sha256(file.content).hexdigest() and not stored.already_present
    (blob,) = counted.blobs(f"{message.response_id}/").values()
    assert blob.metadata["sha256"] == stored.sha256 and blob.size == len(file.content)


def test_a_fan_outs_message_also_notes_the_file_settled_and_the_last_wakes_the_watcher(counted: Counted) -> None:
    runtime = get_runtime()
    _, first = counted.file(name="one.png")
    _, last = counted.file(name="two.png")
    response_id = first.response_id
    # Two files of one run, as the fan-out queues them (its settle log opened, once per run).
    first = dataclasses.replace(first, queued=2, generation=1)
    last = dataclasses.replace(last, response_id=response_id, blob_name=f"{response_id}/{last.file_id}/two.png",
                               queued=2, generation=1)
    runtime.status_records.open_settle_log(response_id, 1)
    runtime.queues.client(runtime.settings.queues.runs).create_queue()  # the watcher's queue, as in Azure
    counted.requests()
    deliver(runtime, first)
    assert counted.requests() == {"blob": {"PUT": 2}, "queue": {}, "openai": {"GET": 1}}  # the Put, the line
    deliver(runtime, last)
    assert counted.requests() == {"blob": {"PUT": 2}, "queue": {"POST": 1}, "openai": {"GET": 1}}  # and the wake-up


def test_a_redelivery_looks_first_and_downloads_nothing_stored(counted: Counted) -> None:
    _, message = counted.file()
    first = deliver(get_runtime(), message)
    counted.requests()
    again = deliver(build_runtime(load_settings()), message, deliveries=2)  # on another instance
    assert counted.requests() == {"blob": {"GET": 1}, "queue": {}, "openai": {}}  # one listing
    assert again.already_present and again.sha256 == first.sha256


def test_a_duplicate_first_delivery_elsewhere_finds_the_blob_with_its_write(counted: Counted) -> None:
    _, message = counted.file()
    deliver(get_runtime(), message)
    before = counted.blobs(f"{message.response_id}/")
    counted.requests()
    # Another instance, which never stored it: it downloads, and the conditional Put is refused.
    elsewhere = build_runtime(load_settings())
    deliver(elsewhere, counted.file(name="its-own.png")[1])  # its container check, once per process
    counted.requests()
    duplicate = deliver(elsewhere, message)
    assert counted.requests() == {"blob": {"PUT": 1, "HEAD": 1}, "queue": {}, "openai": {"GET": 1}}
    assert duplicate.already_present
    after = counted.blobs(f"{message.response_id}/")
    assert list(after) == list(before)  # one blob
    assert after[message.blob_name].etag == before[message.blob_name].etag  # not written again


def test_a_duplicate_on_the_instance_that_stored_it_looks_first(counted: Counted) -> None:
    _, message = counted.file()
    runtime = get_runtime()
    deliver(runtime, message)
    counted.requests()
    assert deliver(runtime, message).already_present
    assert counted.requests() == {"blob": {"GET": 1}, "queue": {}, "openai": {}}


def test_a_duplicate_of_a_blob_deleted_since_is_stored_again(counted: Counted) -> None:
    file, message = counted.file()
    runtime = get_runtime()
    deliver(runtime, message)
    counted.env.artifacts().delete_blob(message.blob_name)  # by hand, before an import queues it again
    stored = deliver(runtime, message)
    assert not stored.already_present
    assert counted.env.artifacts().download_blob(message.blob_name).readall() == file.content


def test_a_message_naming_only_the_ids_finds_the_file_under_its_real_name(counted: Counted) -> None:
    _, message = counted.file()
    deliver(get_runtime(), message)
    counted.requests()
    ids_only = (f'{{"response_id": "{message.response_id}", "container_id": "{message.container_id}", '
                f'"file_id": "{message.file_id}"}}')
    found = deliver(build_runtime(load_settings()), ids_only)
    assert counted.requests() == {"blob": {"GET": 1}, "queue": {}, "openai": {}}
    assert found.blob_name == message.blob_name
    assert list(counted.blobs(f"{message.response_id}/")) == [message.blob_name]  # no second name


@pytest.mark.parametrize("size", [None, 5 * 1024 * 1024], ids=["unsized", "larger than a block"])
def test_a_file_that_may_be_large_is_looked_up_before_it_is_downloaded(counted: Counted, size: int | None) -> None:
    file, message = counted.file(size=size or 10_000)
    message = ArtifactMessage(**{**message.describe(), "response_id": message.response_id, "size": size})
    deliver(get_runtime(), message)
    requests = counted.requests()
    assert requests["openai"] == {"GET": 1}
    assert requests["blob"]["GET"] == 1  # the listing, before anything is downloaded
    stored = counted.env.artifacts().download_blob(message.blob_name).readall()
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(file.content).hexdigest()
