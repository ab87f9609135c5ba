"""The run's promises under redelivery and repair: nothing forgotten, every run ends with an event,
and one event per outcome whatever wakes the watcher.

Each test reproduces one way the pipeline used to break a promise (issue 18), through real
Azurite queues and the fake over HTTP.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

from shared.pipeline.watcher import MAX_EARLY_LOOKS, Watcher
from shared.runtime import get_runtime
from shared.storage.messages import WatchMessage
from shared.storage.run_records import RUN_RECORD
from shared.storage.status_records import Failure
from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.azurite import Azurite
from tests.support.flow import all_at_once, events, finished, landed, post_run, status
from tests.support.host import FunctionsHost
from tests.support.principals import easy_auth

CODE_INTERPRETER = {"type": "code_interpreter", "container": {"type": "auto"}}


def files(count: int, *, cited: bool | None = None) -> list[FakeFile]:
    """``count`` files; every other one cited unless ``cited`` says all or none."""
    return [
        FakeFile(os.urandom(1500), f"/mnt/data/f{i}.bin",
                 cite="real" if (cited if cited is not None else i % 2 == 1) else None,
                 file_id=f"cfile_{uuid.uuid4().hex}")  # known now: a test aims faults at it
        for i in range(count)
    ]


def quiesce(host: FunctionsHost) -> None:
    """Deliver whatever is visible until nothing is (delayed messages stay where they are)."""
    host.run_until(lambda: True)
    while any(host.deliver(name) for name in ("watch_run", "persist_artifact")):
        pass


def send_raw(host: FunctionsHost, queue: str, text: str) -> None:
    host.queue(queue).send_message(base64.b64encode(text.encode()).decode())


# -- defect 2: import forgets what it knew -------------------------------------------------------


def test_import_after_the_container_expired_keeps_every_known_artifact(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    made = files(4)  # two cited, two found only by listing the container
    response_id = post_run(host, fake, Scenario([FakeContainer(made)])).json()["response_id"]
    first = finished(host, response_id)
    assert first["counts"] == {"pending": 0, "persisted": 4, "failed": 0}
    (first_event,) = events(host, app_env)

    fake.expire(first["artifacts"][0]["container_id"])  # the usual state when someone repairs a run
    assert host.http("POST", f"responses/{response_id}/import").response.status_code == 202
    second = finished(host, response_id)
    (second_event,) = events(host, app_env)

    by_id = {entry["file_id"]: entry for entry in second["artifacts"]}
    assert set(by_id) == {f.file_id for f in made}, "an artifact once known must stay known"
    assert all(entry["state"] == "persisted" for entry in by_id.values())
    assert {a["file_id"] for a in second_event["artifacts"]} == {f.file_id for f in made}
    assert second_event["counts"]["persisted"] == 4
    assert landed(app_env, response_id) == {f.file_id: f.content for f in made}
    assert first_event["counts"] == second_event["counts"]


# -- defect 3: an import whose wake-up cannot be sent kills the live chain ----------------------


def test_an_import_that_cannot_be_queued_leaves_the_run_as_it_was(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = files(2)
    response_id = post_run(host, fake, Scenario([FakeContainer(made)], polls_before_done=3)).json()["response_id"]
    host.run_until(lambda: fake.polls(response_id) >= 1, only=("watch_run",))
    before = get_runtime().status_records.runs.read(response_id)
    assert before is not None and before.record.phase == "running"

    # Blobs work, the queues refuse the app: the import cannot send its wake-up.
    monkeypatch.setenv("ARTIFACTS_STORAGE_CONNECTION", azurite.connection_string)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.refused_connection_string())
    refused = host.http("POST", f"responses/{response_id}/import")
    assert refused.response.status_code == 503, refused.response.get_body()
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)

    after = get_runtime().status_records.runs.read(response_id)
    assert after is not None and after.etag == before.etag, "a failed import must not touch the record"
    final = finished(host, response_id)  # the live chain goes on
    assert final["counts"] == {"pending": 0, "persisted": 2, "failed": 0}
    assert len(events(host, app_env)) == 1


# -- defect 8: messages that expire -----------------------------------------------------------


def test_app_messages_never_expire(host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv) -> None:
    """A consumer down for a week must still find its events; a file message must not vanish."""
    response_id = post_run(host, fake, Scenario([FakeContainer(files(1))])).json()["response_id"]
    host.run_until(lambda: status(host, response_id)["phase"] == "persisting", only=("watch_run",))
    for queue in (app_env.queue, app_env.runs_queue):
        peeked = host.queue(queue).peek_messages(max_messages=32)
        if peeked:
            assert all(m.expires_on is None or m.expires_on.year >= 9999 for m in peeked), queue
    finished(host, response_id)
    (event,) = host.queue(app_env.events_queue).peek_messages(max_messages=32)
    assert event.expires_on is None or event.expires_on.year >= 9999, event.expires_on
    assert event.expires_on is None or event.expires_on > datetime(2100, 1, 1, tzinfo=UTC)


# -- defect 9: a deleted run record ends its chain silently ------------------------------------


def test_a_deleted_run_record_is_recorded_and_the_run_still_gets_its_event(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    made = files(2, cited=True)
    response_id = post_run(host, fake, Scenario([FakeContainer(made)], polls_before_done=3)).json()["response_id"]
    host.run_until(lambda: fake.polls(response_id) >= 1, only=("watch_run",))
    app_env.status().get_blob_client(f"{response_id}/{RUN_RECORD}").delete_blob()

    # Until the chain's next message arrives, the run is unknown (404); then it is followed again.
    host.run_until(lambda: host.http("GET", f"responses/{response_id}").response.status_code == 200)
    final = finished(host, response_id)
    assert final["counts"] == {"pending": 0, "persisted": 2, "failed": 0}
    assert any(w.get("code") == "record_lost" for w in final["warnings"]), final["warnings"]
    assert final["complete"] is False  # what the record held before is gone: say so
    (event,) = events(host, app_env)
    assert event["event_id"] == final["event_id"]
    assert any(w.get("code") == "record_lost" for w in event["warnings"])


def test_a_run_followed_again_after_its_record_was_deleted_keeps_its_owner(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    alice = {**easy_auth("0f0e-alice"), "content-type": "application/json"}
    prompt = f"make files {uuid.uuid4().hex}"
    fake.register(prompt, Scenario([FakeContainer(files(1, cited=True))], polls_before_done=3))
    call = host.http("POST", "responses", body=f'{{"input": "{prompt}"}}'.encode(), headers=alice)
    assert call.response.status_code == 202, call.response.get_body()
    response_id = call.json()["response_id"]
    host.run_until(lambda: fake.polls(response_id) >= 1, only=("watch_run",))
    app_env.status().get_blob_client(f"{response_id}/{RUN_RECORD}").delete_blob()

    host.run_until(lambda: host.http("GET", f"responses/{response_id}", headers=alice).response.status_code == 200)
    final = finished(host, response_id, headers=alice)  # still Alice's run, not everybody's
    assert final["counts"]["persisted"] == 1
    bob = easy_auth("7a7b-bob")
    assert host.http("GET", f"responses/{response_id}", headers=bob).response.status_code == 404  # nobody else's
    (event,) = events(host, app_env)
    assert event["owner"] == "aad:0f0e-alice"


# -- defect 12: several identical events with no crash at all ---------------------------------


def test_a_wake_up_finding_the_run_completing_sends_nothing(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    """Between marking the run complete and noting the event sent, only the completing step (or
    its redelivery) may send: a wake-up reading the record then sends nothing."""
    response_id = post_run(host, fake, Scenario([FakeContainer(files(1))])).json()["response_id"]
    finished(host, response_id)
    (sent,) = events(host, app_env)
    runtime = get_runtime()
    stored = runtime.status_records.runs.read(response_id)
    assert stored is not None
    # The record as the completing step leaves it just before it sends the event.
    completing = copy.deepcopy(stored.record)
    completing.event_sent = False
    runtime.status_records.runs.replace(completing, stored.etag)

    for wake in (WatchMessage(response_id), WatchMessage(response_id, capture=True)):
        send_raw(host, app_env.runs_queue, wake.to_json())
    send_raw(host, app_env.runs_queue, f'{{"response_id": "{response_id}"}}')  # a hand-written one
    quiesce(host)
    assert events(host, app_env) == []

    # The completing step's own message (its redelivery, or its safety net) does send, once.
    Watcher(runtime).handle(WatchMessage(response_id, completing.seq, completing.step_token))
    (again,) = events(host, app_env)
    assert again["event_id"] == sent["event_id"]  # same outcome, same id
    assert status(host, response_id)["event_id"] == sent["event_id"]


def test_a_burst_of_wake_ups_at_completion_sends_one_event(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    response_id = post_run(host, fake, Scenario([FakeContainer(files(3, cited=True))])).json()["response_id"]
    host.run_until(lambda: status(host, response_id)["phase"] == "persisting", only=("watch_run",))
    assert all(d.error is None for d in host.deliver("persist_artifact"))
    runtime = get_runtime()
    all_at_once(8, lambda: Watcher(runtime).handle(WatchMessage(response_id)))
    host.run_until(lambda: status(host, response_id)["event_id"] is not None)
    quiesce(host)
    assert len(events(host, app_env)) == 1


# -- the event id is derived from the outcome --------------------------------------------------


def test_a_re_import_that_changed_nothing_repeats_the_event_id_and_a_repair_gets_a_new_one(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    made = files(2, cited=True)
    prompt = f"elsewhere {uuid.uuid4().hex}"
    fake.register(prompt, Scenario([FakeContainer(made)]))
    response_id = fake.create({"model": "m", "input": prompt, "tools": [CODE_INTERPRETER],
                               "include": ["code_interpreter_call.outputs"]})["id"]
    broken = made[0].file_id
    fake.fail_next(f"/files/{broken}/content", 400, times=1)  # a permanent failure: recorded as failed

    assert host.http("POST", f"responses/{response_id}/import").response.status_code == 202
    first = finished(host, response_id)
    assert first["counts"] == {"pending": 0, "persisted": 1, "failed": 1}
    (first_event,) = events(host, app_env)

    assert host.http("POST", f"responses/{response_id}/import").response.status_code == 202
    finished(host, response_id)
    quiesce(host)
    (repaired_event,) = events(host, app_env)
    assert repaired_event["counts"] == {"pending": 0, "persisted": 2, "failed": 0}
    assert repaired_event["event_id"] != first_event["event_id"], "a repair that changed the outcome"

    assert host.http("POST", f"responses/{response_id}/import").response.status_code == 202
    finished(host, response_id)
    quiesce(host)
    (same_event,) = events(host, app_env)
    assert same_event["event_id"] == repaired_event["event_id"], "nothing changed: the same event id"


# -- found by review: a poisoned wake-up, a late outcome, a stale generation, orphans ------------


def test_a_poisoned_wake_up_does_not_give_up_a_run_with_a_chain_of_its_own(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    response_id = post_run(host, fake, Scenario([FakeContainer(files(1))], polls_before_done=3)).json()["response_id"]
    runtime = get_runtime()
    # A webhook's (or a settled file's) wake-up failed every delivery: the poison queue's trigger.
    poisoned = host.invoke_queue("give_up_run", WatchMessage(response_id).to_json(), message_id="poisoned-wake")
    assert poisoned.error is None
    stored = runtime.status_records.runs.read(response_id)
    assert stored is not None and stored.record.given_up is None and stored.record.phase == "running"
    final = finished(host, response_id)
    assert final["given_up"] is None and final["complete"] is True
    assert final["counts"]["persisted"] == 1


def test_the_outcome_is_frozen_when_the_run_completes(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    """A late overlapping delivery that lands a file after the event said it failed changes
    neither the status nor another copy of the event: both say what the event said."""
    made = files(1, cited=True)
    scenario = Scenario([FakeContainer(made)])
    fake.fail_next(f"/files/{made[0].file_id}/content", 400)  # a permanent failure
    response_id = post_run(host, fake, scenario).json()["response_id"]
    final = finished(host, response_id)
    assert final["counts"]["failed"] == 1
    (event,) = events(host, app_env)

    # The late delivery's blob: whole, with the metadata the app writes.
    artifact = final["artifacts"][0]
    content = made[0].content
    late = get_runtime().artifact_blobs.write(artifact["blob_name"], [content], metadata={}, content_type="text/plain",
                                     content_disposition="attachment")
    assert late.sha256
    after = status(host, response_id)
    assert after["counts"] == final["counts"] and after["event_id"] == event["event_id"]
    assert after["artifacts"][0]["state"] == "failed"

    # The safety net (or a redelivery of the completing step) sends the same event, if any.
    stored = get_runtime().status_records.runs.read(response_id)
    assert stored is not None
    record = copy.deepcopy(stored.record)
    record.event_sent = False
    get_runtime().status_records.runs.replace(record, stored.etag)
    Watcher(get_runtime()).handle(WatchMessage(response_id, record.seq, record.step_token))
    (again,) = events(host, app_env)
    assert again["event_id"] == event["event_id"] and again["counts"] == event["counts"]


def test_a_late_failure_of_an_earlier_generation_does_not_end_the_next(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    made = files(1, cited=True)
    fake.fail_next(f"/files/{made[0].file_id}/content", 400)
    response_id = post_run(host, fake, Scenario([FakeContainer(made)])).json()["response_id"]
    first = finished(host, response_id)
    assert first["counts"]["failed"] == 1
    events(host, app_env)

    assert host.http("POST", f"responses/{response_id}/import").response.status_code == 202
    host.run_until(lambda: status(host, response_id)["phase"] == "persisting", only=("watch_run",))
    # A delivery of generation 1 that was still running records its failure now, after the import
    # cleared it and queued the file again for generation 2.
    artifact = first["artifacts"][0]
    get_runtime().status_records.record_failure(
        Failure("upstream_error", "a late delivery of the first generation", 5),
        {"response_id": response_id, "container_id": artifact["container_id"], "file_id": artifact["file_id"],
         "filename": artifact["filename"], "blob_name": artifact["blob_name"], "generation": 1},
        None,
    )
    assert status(host, response_id)["counts"]["pending"] == 1  # still generation 2's to settle
    host.run_until(lambda: True, only=("watch_run",))
    assert events(host, app_env) == []  # no event before generation 2's delivery ends

    final = finished(host, response_id)
    assert final["counts"] == {"pending": 0, "persisted": 1, "failed": 0}
    (event,) = events(host, app_env)
    assert event["counts"] == final["counts"]


def test_an_early_message_whose_step_never_saves_is_dropped_in_the_end(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    response_id = post_run(host, fake, Scenario([FakeContainer(files(1))], polls_before_done=50)).json()[
        "response_id"]
    runtime = get_runtime()
    record = runtime.status_records.runs.read(response_id).record  # type: ignore[union-attr]
    early = WatchMessage(response_id, record.seq + 1, "orphan")
    Watcher(runtime).handle(early)
    resent = taken_with_token(host, app_env.runs_queue, "orphan")  # sent again, 2 s later
    assert (resent["seq"], resent["looks"]) == (record.seq + 1, 1)

    Watcher(runtime).handle(dataclasses.replace(early, looks=MAX_EARLY_LOOKS))
    with pytest.raises(AssertionError, match="no message"):
        taken_with_token(host, app_env.runs_queue, "orphan", timeout=4.0)  # dropped: not sent again


def taken_with_token(host: FunctionsHost, queue: str, token: str, timeout: float = 10.0) -> dict[str, object]:
    """Take messages off the queue (delayed ones become visible on their own) until one carries
    ``token``; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        for text in host.messages(queue):
            message: dict[str, object] = json.loads(text)
            if message.get("token") == token:
                return message
        assert time.monotonic() < deadline, f"no message with token {token!r} on {queue} after {timeout} s"
        threading.Event().wait(0.1)  # polling the queue, bounded by the deadline
