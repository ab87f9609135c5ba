"""A run keeps its owner however it comes to be recorded: by the POST, by the POST retried with its
Idempotency-Key after the record write failed, or by a webhook capture that got there first.
Easy Auth is on in every test (the platform's caller headers are trusted)."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.runtime import get_runtime
from shared.storage.messages import WatchMessage
from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.flow import events, finished, landed
from tests.support.host import FunctionsHost, HttpCall
from tests.support.http_front import FUNCTION_KEY, serve_http
from tests.support.principals import CALLER, IMPORTER
from tests.support.principals import easy_auth as principal
from tests.support.storage_faults import BlobFaults

CODE_INTERPRETER = {"type": "code_interpreter", "container": {"type": "auto"}}

ALICE = principal("0f0e-alice")
BOB = principal("7a7b-bob")
ALICE_OWNER = "aad:0f0e-alice"
# The same principals holding the import right too (ARTIFACTS_IMPORT_ROLE).
ALICE_IMPORTING = principal("0f0e-alice", CALLER, IMPORTER)
BOB_IMPORTING = principal("7a7b-bob", CALLER, IMPORTER)


def scenario() -> Scenario:
    return Scenario([FakeContainer([FakeFile(uuid.uuid4().bytes * 20, "/mnt/data/owned.csv", cite="real")])])


def post(host: FunctionsHost, prompt: str, who: dict[str, str], key: str | None = None) -> HttpCall:
    headers = {"content-type": "application/json", **who, **({"Idempotency-Key": key} if key else {})}
    return host.http("POST", "responses", body=json.dumps({"input": prompt}).encode(), headers=headers)


def seen_by(host: FunctionsHost, response_id: str, who: dict[str, str]) -> int:
    status: int = host.http("GET", f"responses/{response_id}", headers=who).response.status_code
    return status


def test_a_post_retried_after_its_record_failed_keeps_its_owner(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, easy_auth_on: None, app_blobs: BlobFaults
) -> None:
    prompt = f"owned {uuid.uuid4().hex}"
    fake.register(prompt, scenario())
    key = f"order-{uuid.uuid4().hex}"
    app_blobs.refuse_next("PUT", "/_run.json")  # the run record's write, once

    first = post(host, prompt, ALICE, key)
    assert first.response.status_code == 503, first.response.get_body()
    assert first.json()["error"]["code"] == "not_queued"
    assert len(app_blobs.refused) == 1
    response_id = first.json()["error"]["response_id"]

    retry = post(host, prompt, ALICE, key)
    assert retry.response.status_code == 202, retry.response.get_body()
    assert retry.response.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["response_id"] == response_id

    final = finished(host, response_id, headers=ALICE)  # Alice sees her run through to its end
    assert final["counts"]["persisted"] == 1
    assert seen_by(host, response_id, BOB) == 404
    assert len(landed(app_env, response_id)) == 1
    assert [e["owner"] for e in events(host, app_env)] == [ALICE_OWNER]
    # One run: the fake is shared by the session, so its creates are counted by this test's prompt.
    assert sum(1 for r in fake.requests if r.method == "POST" and r.path == "/openai/v1/responses"
               and prompt.encode() in r.body) == 1


def test_a_wake_up_that_records_a_run_records_its_owner(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, easy_auth_on: None
) -> None:
    prompt = f"woken {uuid.uuid4().hex}"
    fake.register(prompt, scenario())
    response_id = fake.create({"model": "gpt-test", "input": prompt, "store": True,
                               "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}],
                               "include": ["code_interpreter_call.outputs"]})["id"]
    wake = WatchMessage(response_id, owner=ALICE_OWNER)
    host.queue(app_env.runs_queue).send_message(base64.b64encode(wake.to_json().encode()).decode())
    assert [d.error for d in host.deliver("watch_run", max_rounds=1)] == [None]  # the wake-up records the run
    finished(host, response_id, headers=ALICE)
    stored = get_runtime().status_records.runs.read(response_id)
    assert stored is not None and stored.record.owner == ALICE_OWNER
    assert seen_by(host, response_id, BOB) == 404


@pytest.fixture
def webhook_capture_all(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    monkeypatch.setenv("ARTIFACTS_WEBHOOK_CAPTURE", "all")
    with serve_http(host) as base:
        _, secret = fake.register_webhook(f"{base}/api/webhooks/azure-openai?code={FUNCTION_KEY}")
        monkeypatch.setenv("AZURE_OPENAI_WEBHOOK_SECRET", secret)
        try:
            yield
        finally:
            fake.clear_webhooks()


def visible_watch_messages(host: FunctionsHost, env: AppEnv) -> list[dict[str, Any]]:
    return [json.loads(text) for text in host.peek(env.runs_queue)]


@contextlib.contextmanager
def alices_post_held(host: FunctionsHost, fake: FakeAzureOpenAI) -> Iterator[tuple[str, list[HttpCall]]]:
    """Alice POSTs a run that ends at once while the fake holds the create's answer. Inside, the run is
    made and its webhook delivered: the run's id, and the list the POST's answer will be in (still
    empty). On leaving, the answer is released and the POST has ended."""
    prompt = f"raced {uuid.uuid4().hex}"
    fake.register(prompt, scenario())  # a background run that ends at once: its webhook goes out now
    held = fake.hold_next_create_answer()
    answers: list[HttpCall] = []
    poster = threading.Thread(target=lambda: answers.append(post(host, prompt, ALICE)))
    poster.start()
    try:
        response_id = held.wait_made()
        fake.wait_for_deliveries(1, response_id=response_id)
        yield response_id, answers
    finally:
        held.release()
        poster.join(timeout=60)


def test_a_capture_that_records_the_run_first_does_not_take_the_callers_run(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, easy_auth_on: None, webhook_capture_all: None
) -> None:
    with alices_post_held(host, fake) as (response_id, answers):
        # The webhook arrived and its capture records the run while the POST still waits for its answer.
        captured = [m for m in visible_watch_messages(host, app_env) if m["response_id"] == response_id]
        assert [m["capture"] for m in captured] == [True]
        host.deliver("watch_run", max_rounds=1)
        stored = get_runtime().status_records.runs.read(response_id)
        assert stored is not None and stored.record.started_via == "webhook"

    (answer,) = answers
    assert answer.response.status_code == 202, answer.response.get_body()
    assert answer.json()["response_id"] == response_id
    final = finished(host, response_id, headers=ALICE)
    assert final["counts"]["persisted"] == 1
    assert seen_by(host, response_id, BOB) == 404
    assert [e["owner"] for e in events(host, app_env)] == [ALICE_OWNER]


def test_a_run_captured_for_nobody_is_imported_by_its_caller(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, easy_auth_on: None, webhook_capture_all: None
) -> None:
    """A POST without a key whose answer was lost: capture-all records the run for nobody, and the
    the repair docs/api.md gives (import it) makes it the importer's, with an event that names them."""
    prompt = f"lost {uuid.uuid4().hex}"
    fake.register(prompt, scenario())
    fake.lose_next_create_answer()
    lost = post(host, prompt, ALICE)
    assert lost.response.status_code in (502, 504) and lost.json()["error"]["code"] == "outcome_unknown"
    (response_id,) = fake.response_ids(prompt)
    fake.wait_for_deliveries(1, response_id=response_id)
    host.run_until(lambda: get_runtime().status_records.runs.read(response_id) is not None)
    captured = get_runtime().status_records.runs.read(response_id)
    assert captured is not None and captured.record.owner is None
    host.run_until(lambda: get_runtime().status_records.runs.read(response_id).record.event_sent)  # type: ignore[union-attr]
    (nobodys,) = events(host, app_env)
    assert nobodys["owner"] is None

    # A run nobody owns is the import right's: without it, Alice neither sees nor adopts it.
    assert seen_by(host, response_id, ALICE) == 404
    assert host.http("POST", f"responses/{response_id}/import", headers=ALICE).response.status_code == 404
    imported = host.http("POST", f"responses/{response_id}/import", headers=ALICE_IMPORTING)
    assert imported.response.status_code == 202, imported.response.get_body()
    final = finished(host, response_id, headers=ALICE)
    assert final["counts"]["persisted"] == 1
    assert seen_by(host, response_id, BOB) == 404
    (alices,) = events(host, app_env)
    assert alices["owner"] == ALICE_OWNER
    assert alices["event_id"] != nobodys["event_id"], "another owner is another outcome: a consumer must not drop it"
    # Once it is Alice's, nobody else adopts it, import right or not: an owner is never replaced.
    assert host.http("POST", f"responses/{response_id}/import", headers=BOB_IMPORTING).response.status_code == 404
    assert get_runtime().status_records.runs.read(response_id).record.owner == ALICE_OWNER  # type: ignore[union-attr]


def test_a_post_that_adopts_a_capture_already_complete_gets_an_event_naming_its_caller(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, easy_auth_on: None, webhook_capture_all: None
) -> None:
    with alices_post_held(host, fake) as (response_id, answers):
        # The capture records the run for nobody and completes it, event and all, before the POST resumes.
        host.run_until(lambda: (stored := get_runtime().status_records.runs.read(response_id)) is not None
                       and stored.record.event_sent)
    (nobodys,) = events(host, app_env)
    assert nobodys["owner"] is None

    (answer,) = answers
    assert answer.response.status_code == 202, answer.response.get_body()
    final = finished(host, response_id, headers=ALICE)
    assert final["counts"]["persisted"] == 1
    (alices,) = events(host, app_env)
    assert alices["owner"] == ALICE_OWNER and alices["event_id"] != nobodys["event_id"]


def test_an_import_whose_record_write_fails_is_still_followed_for_its_caller(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, easy_auth_on: None, app_blobs: BlobFaults
) -> None:
    """The import sends its first step's message before it writes the record; when the write
    fails (503), that message records the run at step 0, for the importer, with nothing lost."""
    prompt = f"elsewhere {uuid.uuid4().hex}"
    fake.register(prompt, scenario())
    response_id = fake.create({"model": "m", "input": prompt, "tools": [CODE_INTERPRETER],
                               "include": ["code_interpreter_call.outputs"]})["id"]
    app_blobs.refuse_next("PUT", "/_run.json")
    refused = host.http("POST", f"responses/{response_id}/import", headers=ALICE_IMPORTING)
    assert refused.response.status_code == 503, refused.response.get_body()

    host.run_until(lambda: seen_by(host, response_id, ALICE) == 200)
    final = finished(host, response_id, headers=ALICE)
    assert final["counts"]["persisted"] == 1
    assert final["warnings"] == [] and final["complete"] is True
    assert seen_by(host, response_id, BOB) == 404
    (event,) = events(host, app_env)
    assert event["owner"] == ALICE_OWNER


def test_a_claim_the_post_could_not_point_at_its_run_is_noted_by_the_watcher(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, easy_auth_on: None, app_blobs: BlobFaults
) -> None:
    """The run started and is followed, but Storage refused the claim's update: a retry with the
    key must get the run (not 409 for a day) once the watcher has taken its first step."""
    prompt = f"keyed {uuid.uuid4().hex}"
    fake.register(prompt, scenario())
    key = f"order-{uuid.uuid4().hex}"
    app_blobs.refuse_next("PUT", ".json", with_header="If-Match")  # the claim's "started" update, once
    first = post(host, prompt, ALICE, key)
    assert first.response.status_code == 202, first.response.get_body()
    assert len(app_blobs.refused) == 1 and "_idempotency/" in app_blobs.refused[0]
    response_id = first.json()["response_id"]

    finished(host, response_id, headers=ALICE)
    retry = post(host, prompt, ALICE, key)
    assert retry.response.status_code == 202, retry.response.get_body()
    assert retry.json()["response_id"] == response_id
    assert fake.response_ids(prompt) == [response_id]  # and no second run
