"""The benchmarks' host stand-in: messages delivered from a real queue to the app in a worker
process of its own, at most host.json's concurrency at once, deleted when done."""

from __future__ import annotations

import base64
import hashlib
import threading

from bench.queue_host import FunctionWorker, QueueSettings, host_queues, listeners
from shared.storage.messages import ArtifactMessage
from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile
from tests.support.azurite import Azurite
from tests.support.host import FunctionsHost


def test_the_stand_in_delivers_through_a_worker_process(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, azurite: Azurite
) -> None:
    files = [FakeFile(f"file {i}".encode() * 100, f"/mnt/data/f{i}.txt") for i in range(3)]
    container = fake.add_container(FakeContainer(files))
    queue = host.queue(app_env.queue)
    for file in files:
        message = ArtifactMessage(response_id="resp_bench1", container_id=container.container_id,
                                  file_id=file.file_id, filename=file.filename,
                                  blob_name=f"resp_bench1/{file.file_id}/{file.filename}", size=len(file.content))
        queue.send_message(base64.b64encode(message.to_json().encode()).decode())

    settings = QueueSettings.from_host_json()
    assert settings.concurrency == settings.batch_size + settings.new_batch_threshold
    worker = FunctionWorker(settings.concurrency)
    try:
        listener = listeners(host.functions, host_queues(azurite.connection_string), settings, worker,
                             only=("persist_artifact",))["persist_artifact"].start()
        done = threading.Event()
        for _ in range(600):  # at most 60 s: the worker process imports the app first
            if listener.tally.succeeded + listener.tally.failed >= len(files):
                done.set()
                break
            done.wait(0.1)
        listener.stop()
        assert worker.cpu_seconds() > 0
    finally:
        worker.close()
    assert done.is_set()
    assert (listener.tally.succeeded, listener.tally.failed) == (3, 0)
    assert listener.tally.user_seconds > 0 and listener.tally.invocation_seconds > 0
    assert queue.get_queue_properties().approximate_message_count == 0  # each deleted once done
    stored = {b.name: b.metadata for b in app_env.artifacts().list_blobs(include=["metadata"])}
    assert {meta["sha256"] for meta in stored.values()} == {hashlib.sha256(f.content).hexdigest() for f in files}
