"""The completion event follows the last file at once: the delivery that settles a run's last
pending file (stored, or recorded as failed, by a delivery or by the poison queue's trigger)
wakes the run watcher, instead of the event waiting for the watcher's next scheduled check."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.runtime import get_runtime
from shared.storage.messages import ArtifactMessage
from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.flow import events, start_and_discover
from tests.support.host import FunctionsHost

GONE = {"error": {"code": "NotFound", "message": "File with id 'x' not found."}}


def files(count: int) -> list[FakeFile]:
    return [FakeFile(f"file {i}".encode(), f"/mnt/data/f{i}.txt", cite="real") for i in range(count)]


def take_artifact_messages(host: FunctionsHost, env: AppEnv) -> list[str]:
    """The fan-out's messages, off the queue, to be delivered one at a time."""
    return host.messages(env.queue)


def fanned_out(host: FunctionsHost, fake: FakeAzureOpenAI, env: AppEnv, count: int) -> tuple[str, list[str]]:
    """A run of ``count`` files, discovered: its response_id, and the fan-out's messages off the queue."""
    response_id = start_and_discover(host, fake, Scenario([FakeContainer(files(count))]))["response_id"]
    return response_id, take_artifact_messages(host, env)


def wakes(host: FunctionsHost, env: AppEnv, response_id: str) -> list[str]:
    """Wake-ups for the run on the watcher's queue, visible now (its own scheduled steps carry a seq)."""
    found = []
    for text in host.peek(env.runs_queue):
        message = json.loads(text)
        if message["response_id"] == response_id and message["seq"] is None:
            found.append(text)
    return found


def deliver(host: FunctionsHost, body: str, deliveries: int = 1) -> None:
    """One delivery of an artifact message, through the worker, as the host would make it."""
    delivery = host.invoke_queue("persist_artifact", body, dequeue_count=deliveries)
    assert delivery.error is None, delivery.error


def the_event(host: FunctionsHost, env: AppEnv, response_id: str) -> dict[str, Any]:
    """The run's one wake-up on the watcher's queue, handled now, and the one event it sent."""
    (wake,) = wakes(host, env, response_id)
    assert host.invoke_queue("watch_run", wake, message_id="wake").error is None
    (event,) = events(host, env)
    return event


def test_the_fan_out_counts_the_files_it_queued(host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv) -> None:
    answer = start_and_discover(host, fake, Scenario([FakeContainer(files(3))]))
    queued = [ArtifactMessage.from_json(text) for text in take_artifact_messages(host, app_env)]
    assert [(m.queued, m.generation) for m in queued] == [(3, 1)] * 3
    assert {m.response_id for m in queued} == {answer["response_id"]}


def test_the_last_file_stored_wakes_the_watcher_and_the_event_follows(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    response_id, (first, second, last) = fanned_out(host, fake, app_env, 3)
    deliver(host, first)
    deliver(host, second)
    assert wakes(host, app_env, response_id) == []  # a file is still pending
    deliver(host, last)
    event = the_event(host, app_env, response_id)
    assert event["response_id"] == response_id
    assert event["counts"] == {"pending": 0, "persisted": 3, "failed": 0}


def test_a_last_file_that_fails_for_good_wakes_the_watcher(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    response_id, (stored, gone) = fanned_out(host, fake, app_env, 2)
    deliver(host, stored)
    fake.fail_next("/content", 404, GONE)
    deliver(host, gone)  # recorded as failed (file_gone): the delivery completes
    assert [f["code"] for f in get_runtime().status_records.failures(response_id).values()] == ["file_gone"]
    assert the_event(host, app_env, response_id)["counts"] == {"pending": 0, "persisted": 1, "failed": 1}


def test_the_poison_queue_trigger_settling_the_last_file_wakes_the_watcher(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTIFACTS_DOWNLOAD_ATTEMPTS", "1")
    response_id = start_and_discover(host, fake, Scenario([FakeContainer(files(1))]))["response_id"]
    fake.fail_next("/content", 500, times=100)
    host.deliver("persist_artifact", until_empty=True, max_rounds=10)  # five failed deliveries
    assert wakes(host, app_env, response_id) == []
    host.deliver("record_failed_artifact")
    assert the_event(host, app_env, response_id)["counts"] == {"pending": 0, "persisted": 0, "failed": 1}


def test_a_duplicate_settles_again_and_only_wakes_early(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    response_id, (first, second) = fanned_out(host, fake, app_env, 2)
    deliver(host, first)
    deliver(host, first, deliveries=2)  # a redelivery of a stored file: found stored, counted again
    (early,) = wakes(host, app_env, response_id)
    assert host.invoke_queue("watch_run", early, message_id="early").error is None
    assert events(host, app_env) == []  # one check, a file pending: no event yet
    host.messages(app_env.runs_queue)  # drop what is visible, to see the next wake-up alone
    deliver(host, second)
    assert the_event(host, app_env, response_id)["counts"] == {"pending": 0, "persisted": 2, "failed": 0}


def test_a_message_without_its_fan_outs_count_wakes_nothing(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    response_id, (text,) = fanned_out(host, fake, app_env, 1)
    old = {key: value for key, value in json.loads(text).items() if key not in ("queued", "generation")}
    deliver(host, json.dumps(old))
    assert get_runtime().artifact_blobs.artifacts_of(response_id)  # stored
    assert wakes(host, app_env, response_id) == []
    # The status container holds no settle line for it; the failures listing ignores the log anyway.
    assert get_runtime().status_records.failures(response_id) == {}
