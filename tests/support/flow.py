"""Driving a run through the app as a caller and the host would: POST, queues, status, events."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from shared.settings import QueueNames
from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.cloud_events import check_envelope, event_data
from tests.support.host import FunctionsHost, HttpCall


def post_run(
    host: FunctionsHost, fake: FakeAzureOpenAI, scenario: Scenario, *, expect: int = 202, **body: Any
) -> HttpCall:
    """POST a prompt that the fake answers with ``scenario``; the answer must have status ``expect``."""
    prompt = f"make files {uuid.uuid4().hex}"
    fake.register(prompt, scenario)
    call = host.http("POST", "responses", body=json.dumps({"input": prompt, **body}).encode())
    assert call.response.status_code == expect, call.response.get_body()
    return call


def create_body(prompt: str, **extra: Any) -> dict[str, Any]:
    """A Responses API create for the fake itself: the code interpreter in an auto container, its
    outputs included, in the background; ``extra`` adds or replaces fields."""
    return {
        "model": "gpt-test",
        "input": prompt,
        "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}],
        "include": ["code_interpreter_call.outputs"],
        "background": True,
        **extra,
    }


def status(host: FunctionsHost, response_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    call = host.http("GET", f"responses/{response_id}", headers=headers)
    assert call.response.status_code == 200, call.response.get_body()
    result: dict[str, Any] = call.json()
    return result


def discovered(host: FunctionsHost, response_id: str) -> dict[str, Any]:
    """Let the watcher find the run's files and queue them; the status once it has."""
    host.run_until(lambda: status(host, response_id)["phase"] != "running", timeout=30, only=("watch_run",))
    return status(host, response_id)


def start_and_discover(
    host: FunctionsHost, fake: FakeAzureOpenAI, scenario: Scenario, **body: Any
) -> dict[str, Any]:
    """POST, then the watcher's first steps: the status with every artifact known, none downloaded yet."""
    response_id = post_run(host, fake, scenario, **body).json()["response_id"]
    return discovered(host, response_id)


def discovered_on_a_short_deadline(
    host: FunctionsHost, fake: FakeAzureOpenAI, monkeypatch: pytest.MonkeyPatch, file: FakeFile
) -> dict[str, Any]:
    """A run of one ``file``, discovered, where a delivery may take 2 s (functionTimeout 4 s), a read
    10 s (the read timeout), and a download is tried once per delivery."""
    monkeypatch.setenv("AzureFunctionsJobHost__functionTimeout", "00:00:04")
    monkeypatch.setenv("AZURE_OPENAI_TIMEOUT_SECONDS", "10")
    monkeypatch.setenv("ARTIFACTS_DOWNLOAD_ATTEMPTS", "1")
    return start_and_discover(host, fake, Scenario([FakeContainer([file])]))


def finished(
    host: FunctionsHost, response_id: str, *, timeout: float = 60, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run every queue until the run's completion event is sent; its final status (as ``headers``' caller)."""
    host.run_until(lambda: status(host, response_id, headers)["event_id"] is not None, timeout=timeout)
    return status(host, response_id, headers)


def poisoned(host: FunctionsHost, env: AppEnv) -> int:
    """How many artifact messages the poison queue holds."""
    return host.queue(QueueNames.poison(env.queue)).get_queue_properties().approximate_message_count or 0


def spent_into_poison(host: FunctionsHost, env: AppEnv, response_id: str) -> tuple[list[bool], int, dict[str, Any]]:
    """Deliver the artifact messages until none is left, then the poison queue's trigger: which
    deliveries completed, the poison queue's count before its trigger ran, and the first artifact's status."""
    deliveries = host.deliver("persist_artifact", until_empty=True, max_rounds=20)
    completed = [d.error is None for d in deliveries]
    poison = poisoned(host, env)
    host.deliver("record_failed_artifact")
    artifact: dict[str, Any] = status(host, response_id)["artifacts"][0]
    return completed, poison, artifact


def all_at_once(count: int, action: Callable[[], object]) -> None:
    """``action`` on ``count`` threads, released together by a barrier; back once all have ended
    (each waited for 60 s at the most)."""
    gate = threading.Barrier(count)

    def run() -> None:
        gate.wait()
        action()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)


def landed(env: AppEnv, response_id: str) -> dict[str, bytes]:
    """The artifact blobs of one run, by file id."""
    container = env.artifacts()
    if not container.exists():
        return {}
    return {
        blob.name.split("/")[1]: container.get_blob_client(blob.name).download_blob().readall()
        for blob in container.list_blobs(name_starts_with=f"{response_id}/")
    }


def events(host: FunctionsHost, env: AppEnv) -> list[dict[str, Any]]:
    """Take the completion events off the events queue, each checked as a CloudEvent: their data."""
    return [event_data(text) for text in host.messages(env.events_queue)]


def cloud_events(host: FunctionsHost, env: AppEnv) -> list[dict[str, Any]]:
    """Take the completion events off the events queue, whole (the CloudEvents envelope), checked."""
    found = [json.loads(text) for text in host.messages(env.events_queue)]
    for document in found:
        check_envelope(document)
    return found
