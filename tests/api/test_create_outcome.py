"""A create whose outcome is unknown (the request reached Azure OpenAI, the answer was lost) never
starts a second paid run: the Idempotency-Key's claim is kept, a retry learns the outcome is
unknown, and where webhooks are on the run is found by the tag its create carried and followed
for its caller. Only a failure that proves nothing started frees the key."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.storage.idempotency import CLAIM_TAG_KEY
from tests.conftest import AppEnv
from tests.fake_openai import CreateFault, FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.flow import events, finished, landed
from tests.support.host import FunctionsHost, HttpCall
from tests.support.http_front import FUNCTION_KEY, serve_http
from tests.support.principals import easy_auth

ALICE = easy_auth("0f0e-alice")
BOB = easy_auth("7a7b-bob")


def creates_of(fake: FakeAzureOpenAI, prompt: str) -> list[dict[str, Any]]:
    """The create requests that carried ``prompt`` (the fake is shared by the whole session)."""
    bodies = [json.loads(r.body) for r in fake.requests if r.method == "POST" and r.path == "/openai/v1/responses"]
    return [body for body in bodies if body.get("input") == prompt]


def post(host: FunctionsHost, prompt: str, key: str, who: dict[str, str] | None = None) -> HttpCall:
    headers = {"content-type": "application/json", "Idempotency-Key": key, **(who or {})}
    return host.http("POST", "responses", body=json.dumps({"input": prompt}).encode(), headers=headers)


def lose_the_answer(fake: FakeAzureOpenAI, how: str) -> CreateFault:
    if how == "dropped":
        return fake.lose_next_create_answer()
    fault = fake.hold_next_create_answer()  # held past the client's timeout, then sent to nobody
    return fault


@pytest.mark.parametrize("how", ["dropped", "timed_out"])
def test_a_lost_create_answer_never_starts_a_second_run(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_TIMEOUT_SECONDS", "1")
    prompt = f"paid once {uuid.uuid4().hex}"
    fake.register(prompt, Scenario([FakeContainer([FakeFile(b"x", "/mnt/data/x.txt")])]))
    key = f"key-{uuid.uuid4().hex}"
    fault = lose_the_answer(fake, how)

    first = post(host, prompt, key)
    fault.release()  # a held answer now goes to a connection the app has given up on
    retry = post(host, prompt, key)
    assert len(creates_of(fake, prompt)) == 1  # the retry started no second run

    assert first.response.status_code in (502, 504), first.response.get_body()
    assert first.json()["error"]["code"] == "outcome_unknown"
    assert "Idempotency-Key" in first.json()["error"]["message"]
    assert retry.response.status_code == 409, retry.response.get_body()
    error = retry.json()["error"]
    assert error["code"] == "outcome_unknown"
    assert "new Idempotency-Key" in error["message"]
    assert fault.wait_made()  # the run the first create made exists on Azure's side


def test_a_failure_that_proves_nothing_started_frees_the_key(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    prompt = f"refused {uuid.uuid4().hex}"
    key = f"key-{uuid.uuid4().hex}"
    fake.fail_next("/openai/v1/responses", 400, {"error": {"code": "model_not_found", "message": "no deployment"}})
    refused = post(host, prompt, key)
    assert refused.response.status_code == 502
    assert refused.json()["error"]["code"] == "upstream_error"
    retry = post(host, prompt, key)
    assert retry.response.status_code == 202, retry.response.get_body()


def test_the_tag_is_reserved(host: FunctionsHost, fake: FakeAzureOpenAI) -> None:
    before = fake.created_count()
    body = json.dumps({"input": "x", "metadata": {CLAIM_TAG_KEY: "forged"}}).encode()
    call = host.http("POST", "responses", body=body)
    assert call.response.status_code == 400
    assert call.json()["error"]["field"] == f"metadata.{CLAIM_TAG_KEY}"
    assert fake.created_count() == before


@pytest.fixture
def webhooks(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], None]]:
    """The app's webhook registered at the fake (capture mode ``started``); yields a function that
    waits for every delivery made so far to be answered."""
    with serve_http(host) as base:
        _, secret = fake.register_webhook(f"{base}/api/webhooks/azure-openai?code={FUNCTION_KEY}")
        monkeypatch.setenv("AZURE_OPENAI_WEBHOOK_SECRET", secret)
        try:
            yield fake.wait_for_webhooks_settled
        finally:
            fake.clear_webhooks()


@pytest.fixture(params=["started", "all"])
def capture_mode(request: pytest.FixtureRequest, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch) -> str:
    mode: str = request.param
    monkeypatch.setenv("ARTIFACTS_WEBHOOK_CAPTURE", mode)
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    return mode


def test_a_lost_create_is_found_by_its_webhook_and_followed_for_its_caller(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, webhooks: Callable[[], None], capture_mode: str
) -> None:
    made = [FakeFile(uuid.uuid4().bytes * 30, "/mnt/data/found.csv", cite="real")]
    prompt = f"found later {uuid.uuid4().hex}"
    fake.register(prompt, Scenario([FakeContainer(made)], polls_before_done=10_000))
    key = f"key-{uuid.uuid4().hex}"
    fault = fake.lose_next_create_answer()

    first = post(host, prompt, key, ALICE)
    assert first.json()["error"]["code"] == "outcome_unknown"
    response_id = fault.wait_made()
    (sent,) = creates_of(fake, prompt)
    assert CLAIM_TAG_KEY in sent["metadata"]  # the create carried the claim's tag
    assert post(host, prompt, key, ALICE).response.status_code == 409  # not found yet

    fake.finish(response_id)  # the run ends: Azure OpenAI calls the webhook
    webhooks()
    host.run_until(lambda: len(landed(app_env, response_id)) == 1, timeout=60)

    replay = post(host, prompt, key, ALICE)
    assert replay.response.status_code == 202, replay.response.get_body()
    assert replay.json()["response_id"] == response_id
    assert replay.response.headers["Idempotent-Replayed"] == "true"
    final = finished(host, response_id, headers=ALICE)
    assert final["counts"]["persisted"] == 1
    assert host.http("GET", f"responses/{response_id}", headers=BOB).response.status_code == 404
    assert [e["owner"] for e in events(host, app_env)] == ["aad:0f0e-alice"]
    assert len(creates_of(fake, prompt)) == 1
