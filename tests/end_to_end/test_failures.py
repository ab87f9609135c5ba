"""Fault injection through the fake Azure OpenAI and a restarted Azurite.

Every case ends by checking Storage: each file whole (bytes and hash), or recorded as failed
with a reason; never twice, never partial. The status API must agree.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from tests.conftest import API_KEY, AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.azurite import free_port, start_azurite
from tests.support.flow import discovered, events, finished, start_and_discover, status
from tests.support.host import FunctionsHost

MiB = 1024 * 1024


def run(host: FunctionsHost, fake: FakeAzureOpenAI, *files: FakeFile) -> dict[str, Any]:
    """A run that made ``files``, discovered and queued by the watcher; nothing downloaded yet."""
    scenario = Scenario([FakeContainer(list(files))])
    answer = start_and_discover(host, fake, scenario)
    answer["container_id"] = scenario.containers[0].container_id
    return answer


def artifact_blobs(env: AppEnv) -> dict[str, bytes]:
    container = env.artifacts()
    if not container.exists():
        return {}
    return {b.name: container.get_blob_client(b.name).download_blob().readall() for b in container.list_blobs()}


def assert_whole(env: AppEnv, answer: dict[str, Any], file: FakeFile) -> None:
    blob_name = next(a["blob_name"] for a in answer["artifacts"] if a["file_id"] == file.file_id)
    blob = env.artifacts().get_blob_client(blob_name)
    assert blob.download_blob().readall() == file.content
    metadata = blob.get_blob_properties().metadata
    assert metadata["sha256"] == hashlib.sha256(file.content).hexdigest()
    assert metadata["size"] == str(len(file.content))


Inject = Callable[[FakeAzureOpenAI, str], None]  # (fake, container id)


@dataclass
class Fault:
    name: str
    inject: Inject
    outcome: str  # "persisted" or "failed:<code>"
    size: int = 64 * 1024
    env: dict[str, str] | None = None


def _fail(status: int, times: int = 1, body: dict[str, Any] | None = None, **headers: str) -> Inject:
    def inject(fake: FakeAzureOpenAI, _container_id: str) -> None:
        fake.fail_next("/content", status, body, headers={k.replace("_", "-"): v for k, v in headers.items()},
                       times=times)

    return inject


def _then(*steps: Inject) -> Inject:
    def inject(fake: FakeAzureOpenAI, container_id: str) -> None:
        for step in steps:
            step(fake, container_id)

    return inject


def _nothing(_fake: FakeAzureOpenAI, _container_id: str) -> None:
    return None


FAULTS = [
    Fault("429 with retry-after-ms", _fail(429, times=2, retry_after_ms="20"), "persisted"),
    Fault("429 with Retry-After seconds", _fail(429, Retry_After="0"), "persisted"),
    Fault("500 then 502", _then(_fail(500), _fail(502)), "persisted"),
    Fault("503 three times", _fail(503, times=3), "persisted"),
    Fault("body cut mid-stream (single block)", lambda f, c: f.cut_next_download(30_000), "persisted"),
    Fault("body cut mid-stream (many blocks)", lambda f, c: f.cut_next_download(5 * MiB, times=2), "persisted",
          size=9 * MiB),
    Fault("body cut, no length announced (listing size catches it)",
          lambda f, c: f.cut_next_download(30_000, announce_length=False), "persisted"),
    Fault("slow body past the read timeout", lambda f, c: f.stall_next_download(1000, 3.0), "persisted",
          env={"AZURE_OPENAI_TIMEOUT_SECONDS": "0.5"}),
    Fault("container expired", lambda f, c: f.expire(c), "failed:file_gone"),
    Fault("file unknown", _fail(404, body={"error": {"code": "NotFound", "message": "File with id 'x' not found."}}),
          "failed:file_gone"),
    # A wrong endpoint or a gateway answers 404 for the route itself: configuration, never "gone".
    Fault("404 for a route, not for the file",
          _fail(404, body={"error": {"code": "404", "message": "Resource not found"}}), "persisted"),
    Fault("404 from a gateway (another error shape)",
          _fail(404, body={"statusCode": 404, "message": "Resource not found"}), "persisted"),
    Fault("400 that is not expiry", _fail(400, body={"error": {"message": "bad"}}), "failed:upstream_error"),
    Fault("over the size limit", _nothing, "failed:too_large", size=5000, env={"ARTIFACTS_MAX_FILE_BYTES": "4096"}),
    Fault("empty file", _nothing, "persisted", size=0),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_download_fault(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch, fault: Fault
) -> None:
    for name, value in (fault.env or {}).items():
        monkeypatch.setenv(name, value)
    file = FakeFile(os.urandom(fault.size), "/mnt/data/data.bin", cite="real")
    answer = run(host, fake, file)
    fault.inject(fake, answer["container_id"])

    deliveries = host.deliver("persist_artifact", until_empty=True)
    assert all(d.error is None for d in deliveries), [repr(d.error) for d in deliveries]

    artifact = status(host, answer["response_id"])["artifacts"][0]
    if fault.outcome == "persisted":
        assert_whole(app_env, answer, file)
        assert artifact["state"] == "persisted"
        assert artifact["sha256"] == hashlib.sha256(file.content).hexdigest()
        assert artifact["size"] == fault.size
    else:
        assert artifact_blobs(app_env) == {}  # nothing partial
        assert artifact["state"] == "failed"
        assert artifact["code"] == fault.outcome.split(":", 1)[1]
        assert artifact["reason"]
        assert artifact["attempts"] == 1  # recorded on the first delivery: no retry storm


def test_retries_exhausted_goes_to_poison_and_is_recorded(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTIFACTS_DOWNLOAD_ATTEMPTS", "2")
    file = FakeFile(b"never arrives", "/mnt/data/never.txt", cite="real")
    answer = run(host, fake, file)
    fake.fail_next("/content", 500, times=10)  # 5 deliveries x 2 attempts

    deliveries = host.deliver("persist_artifact", until_empty=True)
    assert [d.dequeue_count for d in deliveries] == [1, 2, 3, 4, 5]
    assert all(d.error is not None for d in deliveries)
    poison = host.queue(f"{app_env.queue}-poison").peek_messages(max_messages=5)
    assert len(poison) == 1
    assert json.loads(base64.b64decode(poison[0].content))["file_id"] == file.file_id
    # The poison queue's trigger keeps the precise reason the last delivery recorded as it ended.
    assert [d.error for d in host.deliver("record_failed_artifact")] == [None]
    artifact = status(host, answer["response_id"])["artifacts"][0]
    assert artifact["state"] == "failed"
    assert artifact["code"] == "retries_exhausted"
    assert artifact["attempts"] == 5
    assert "500" in artifact["reason"]
    assert artifact_blobs(app_env) == {}

    # Importing the run again, once the cause is gone, is the repair: the file lands.
    fake.clear_faults()
    repair = host.http("POST", f"responses/{answer['response_id']}/import")
    assert repair.response.status_code == 202, repair.response.get_body()
    final = finished(host, answer["response_id"])
    assert_whole(app_env, answer, file)
    assert final["artifacts"][0]["state"] == "persisted"
    assert final["counts"] == {"pending": 0, "persisted": 1, "failed": 0}


def test_delivery_that_never_finished_is_recorded_by_the_poison_trigger(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    file = FakeFile(b"lost", "/mnt/data/lost.txt", cite="real")
    answer = run(host, fake, file)
    # The host timed the last delivery out (or the instance died): no record was written, and
    # the host moved the message to the poison queue.
    queued = host.queue(app_env.queue).receive_message()
    assert queued is not None
    host.queue(f"{app_env.queue}-poison").send_message(queued.content)
    host.queue(app_env.queue).delete_message(queued)
    assert status(host, answer["response_id"])["artifacts"][0]["state"] == "pending"

    assert [d.error for d in host.deliver("record_failed_artifact")] == [None]
    artifact = status(host, answer["response_id"])["artifacts"][0]
    assert artifact["state"] == "failed"
    assert artifact["code"] == "retries_exhausted"
    # And the run ends with the failure counted in its one event.
    final = finished(host, answer["response_id"])
    assert final["counts"] == {"pending": 0, "persisted": 0, "failed": 1}
    (event,) = events(host, app_env)
    assert event["counts"]["failed"] == 1
    assert event["artifacts"][0]["code"] == "retries_exhausted"


def test_container_deleted_while_running_is_made_again(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    first, second = FakeFile(b"one", "/mnt/data/1.txt"), FakeFile(b"two", "/mnt/data/2.txt")
    answer = run(host, fake, first)
    assert [d.error for d in host.deliver("persist_artifact")] == [None]
    app_env.artifacts().delete_container()
    answer = run(host, fake, second)
    assert [d.error for d in host.deliver("persist_artifact")] == [None]
    assert_whole(app_env, answer, second)


def test_credentials_rejected_is_retried_not_recorded(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    file = FakeFile(b"locked", "/mnt/data/locked.txt", cite="real")
    answer = run(host, fake, file)
    fake.fail_next("/content", 401, times=1)
    first = host.deliver("persist_artifact", max_rounds=1)
    assert len(first) == 1 and first[0].error is not None
    assert status(host, answer["response_id"])["artifacts"][0]["state"] == "pending"
    assert [d.error for d in host.deliver("persist_artifact", until_empty=True)] == [None]
    assert_whole(app_env, answer, file)


class _Collector(BaseHTTPRequestHandler):
    hits: list[str] = []  # noqa: RUF012 - shared on purpose: the test reads it

    def do_GET(self) -> None:
        _Collector.hits.append(f"{self.path} {self.headers.get('api-key')} {self.headers.get('authorization')}")
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"evil")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_redirects_are_not_followed(host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv) -> None:
    other = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        file = FakeFile(b"real bytes", "/mnt/data/r.txt", cite="real")
        answer = run(host, fake, file)
        location = f"http://127.0.0.1:{other.server_address[1]}/steal"
        fake.fail_next("/content", 302, {"error": {"message": "moved"}}, headers={"Location": location})
        assert [d.error for d in host.deliver("persist_artifact")] == [None]
    finally:
        other.shutdown()
        other.server_close()
    assert _Collector.hits == []  # the credentials never left for the other host
    artifact = status(host, answer["response_id"])["artifacts"][0]
    assert artifact["state"] == "failed"
    assert artifact["code"] == "upstream_error"


def test_duplicate_concurrent_delivery_leaves_one_whole_blob(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    file = FakeFile(os.urandom(10 * MiB), "/mnt/data/twice.bin", cite="real")
    run(host, fake, file)
    message = base64.b64decode(host.queue(app_env.queue).peek_messages()[0].content).decode()
    host.queue(app_env.queue).send_message(base64.b64encode(message.encode()).decode())  # a duplicate

    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def deliver() -> None:
        start.wait()
        try:  # three deliveries at once through the worker, as three instances would make them
            failed = host.invoke_queue("persist_artifact", message, message_id=str(uuid.uuid4())).error
            if failed is not None:
                errors.append(AssertionError(str(failed)))
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=deliver) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert errors == []
    # The queued copies (original and duplicate) then find the blob whole: no download at all.
    before = len(fake.requests)
    assert [d.error for d in host.deliver("persist_artifact")] == [None, None]
    assert not any(r.path.endswith("/content") for r in fake.requests[before:])
    blobs = artifact_blobs(app_env)
    assert list(blobs.values()) == [file.content]


def test_hostile_model_output(host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv) -> None:
    names = [
        "../../etc/passwd", "a/b.png", "a_b.png", "\u202eexe.txt", "nul\u0000byte.csv", "." * 5, "x" * 600 + ".csv"
    ]
    files = [FakeFile(f"content {i}".encode(), f"/mnt/data/{i}.bin", cite=None) for i in range(len(names))]
    prompt = f"hostile {uuid.uuid4().hex}"
    scenario = Scenario([FakeContainer(files)])
    fake.register(prompt, scenario)
    for file, name in zip(files, names, strict=True):
        file.path = name  # the model's name for it, as listed and cited
        file.cite = "real"
    evil = FakeFile(b"evil", "/mnt/data/e.txt", file_id="cfile_ok/../../x", cite="real")
    scenario.containers[0].files = [*files, evil]
    call = host.http("POST", "responses", body=json.dumps({"input": prompt}).encode())
    assert call.response.status_code == 202
    answer = discovered(host, call.json()["response_id"])
    assert {a["file_id"] for a in answer["artifacts"]} == {f.file_id for f in files}  # the bad id is dropped
    blob_names = [a["blob_name"] for a in answer["artifacts"]]
    assert len(set(blob_names)) == len(files)  # no two files collide
    for name in blob_names:
        response_id, _file_id, leaf = name.split("/", 2)
        assert response_id == answer["response_id"]
        assert "/" not in leaf and "\\" not in leaf and not leaf.startswith(".")
        assert all(ord(ch) >= 0x20 and ch != "\u202e" for ch in leaf)
        assert len(leaf.encode()) <= 200
    assert all(d.error is None for d in host.deliver("persist_artifact"))
    stored = artifact_blobs(app_env)
    assert sorted(stored.values()) == sorted(f.content for f in files)


HOSTILE_MESSAGES: list[bytes] = [
    b"",
    b"not json",
    b"\xff\xfe\x00",
    b"[1, 2]",
    b"null",
    b'{"v": 1}',
    b'{"v": 99, "response_id": "r", "container_id": "c", "file_id": "f"}',
    b'{"response_id": "../r", "container_id": "c", "file_id": "f"}',
    b'{"response_id": "r", "container_id": "c/../../x", "file_id": "f"}',
    b'{"response_id": "r", "container_id": "c", "file_id": "f?api-version=2024"}',
    b'{"response_id": "r", "container_id": "c", "file_id": "f#frag"}',
    b'{"response_id": "r", "container_id": "c", "file_id": "@evil.example"}',
    b'{"response_id": "r", "container_id": "c", "file_id": "f", "blob_name": "other/f/x"}',
    b'{"response_id": "r", "container_id": "c", "file_id": "f", "blob_name": "r/f/../../x"}',
    b'{"response_id": "r", "container_id": "c", "file_id": "f", "size": "big"}',
    b'{"response_id": "r", "container_id": "c", "file_id": "f", "filename": ["a"]}',
    b'{"response_id": 1, "container_id": "c", "file_id": "f"}',
    json.dumps({"response_id": "r", "container_id": "c", "file_id": "f", "filename": "x" * 40000}).encode(),
]


@pytest.mark.parametrize("body", HOSTILE_MESSAGES, ids=[f"message-{i}" for i in range(len(HOSTILE_MESSAGES))])
def test_hostile_queue_message_is_recorded_and_completed(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, body: bytes
) -> None:
    before = len(fake.requests)
    host.queue(app_env.queue).send_message(base64.b64encode(body).decode())
    assert [d.error for d in host.deliver("persist_artifact")] == [None]
    assert len(fake.requests) == before  # nothing went out for it
    assert artifact_blobs(app_env) == {}
    records = [b.name for b in app_env.status().list_blobs()]
    assert len(records) == 1 and records[0].startswith("_invalid/")
    record = json.loads(app_env.status().get_blob_client(records[0]).download_blob().readall())
    assert record["state"] == "failed" and record["code"] == "invalid_message" and record["reason"]


def test_status_api_bad_and_unknown_ids(host: FunctionsHost) -> None:
    unknown = host.http("GET", "responses/resp_unknown")
    assert unknown.response.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    bad = host.http("GET", "responses/a%2F..%2Fb")
    assert bad.response.status_code == 400
    assert bad.json()["error"]["field"] == "response_id"


def test_secrets_never_logged_or_returned(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    file = FakeFile(b"s", "/mnt/data/s.txt", cite="real")
    answer = run(host, fake, file)
    fake.fail_next("/content", 400, {"error": {"message": f"bad key {API_KEY}"}})
    host.deliver("persist_artifact")
    fake.fail_next("/openai/v1/responses", 500, {"error": {"message": f"echo {API_KEY}"}})
    failed_post = host.http("POST", "responses", body=b'{"input": "x"}')
    outputs = [
        caplog.text,
        json.dumps(status(host, answer["response_id"])),
        failed_post.response.get_body().decode(),
        *(app_env.status().get_blob_client(b.name).download_blob().readall().decode()
          for b in app_env.status().list_blobs()),
    ]
    connection = os.environ["AzureWebJobsStorage"]  # noqa: SIM112 - the host's own name
    account_key = connection.split("AccountKey=")[1].split(";")[0]
    for text in outputs:
        assert API_KEY not in text
        assert account_key not in text


@pytest.fixture
def restartable_azurite(tmp_path: Path) -> Iterator[dict[str, Any]]:
    ports = (free_port(), free_port(), free_port())
    state: dict[str, Any] = {"emulator": start_azurite(tmp_path, ports), "ports": ports, "location": tmp_path}
    yield state
    state["emulator"].stop()


def test_azurite_restart_mid_run_loses_nothing(
    fake: FakeAzureOpenAI,
    app_env: AppEnv,
    monkeypatch: pytest.MonkeyPatch,
    restartable_azurite: dict[str, Any],
) -> None:
    emulator = restartable_azurite["emulator"]
    monkeypatch.setenv("AzureWebJobsStorage", emulator.connection_string)
    app_env.blobs = BlobServiceClient.from_connection_string(emulator.connection_string)
    host = FunctionsHost(emulator.connection_string)  # the worker loads the app under these settings
    files = [FakeFile(os.urandom(2 * MiB), f"/mnt/data/r{i}.bin", cite="real") for i in range(3)]
    prompt = f"restart {uuid.uuid4().hex}"
    fake.register(prompt, Scenario([FakeContainer(files)]))
    answer = host.http("POST", "responses", body=json.dumps({"input": prompt}).encode()).json()
    discovered(host, answer["response_id"])
    queued = host.queue(app_env.queue).peek_messages(max_messages=5)
    assert len(queued) == 3

    # Storage goes away while a message is being worked on: the invocation fails, and
    # since it never completed, the host would deliver the message again.
    emulator.stop()
    failed = host.invoke_queue("persist_artifact", base64.b64decode(queued[0].content).decode())
    assert failed.error is not None  # the worker reports the Storage error: the host would redeliver

    restartable_azurite["emulator"] = start_azurite(restartable_azurite["location"], restartable_azurite["ports"])
    deliveries = host.deliver("persist_artifact", until_empty=True)
    assert all(d.error is None for d in deliveries)
    assert sorted(artifact_blobs(app_env).values()) == sorted(f.content for f in files)
    progress = host.http("GET", f"responses/{answer['response_id']}").json()
    assert progress["counts"] == {"pending": 0, "persisted": 3, "failed": 0}
