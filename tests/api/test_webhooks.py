"""Webhooks: Azure OpenAI (the fake) delivers signed events over real HTTP to the app's webhook
function, behind a loopback copy of the host's HTTP front end, and the run's files land without
waiting for a poll. Every refusal answers as documented and queues nothing."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.conftest import DEPLOYMENT, AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.flow import landed, post_run, status
from tests.support.host import FunctionsHost
from tests.support.http_front import FUNCTION_KEY, serve_http

CODE_INTERPRETER = {"type": "code_interpreter", "container": {"type": "auto"}}
NEVER = "3600"  # a poll delay no test waits out: only a webhook can move the run on


@pytest.fixture
def webhook(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str]]:
    """The app served over HTTP, its webhook registered at the fake; yields (url, secret)."""
    monkeypatch.setenv("ARTIFACTS_POLL_MIN_SECONDS", NEVER)
    monkeypatch.setenv("ARTIFACTS_POLL_MAX_SECONDS", NEVER)
    with serve_http(host) as base:
        url = f"{base}/api/webhooks/azure-openai?code={FUNCTION_KEY}"
        _, secret = fake.register_webhook(url)
        monkeypatch.setenv("AZURE_OPENAI_WEBHOOK_SECRET", secret)
        try:
            yield url, secret
        finally:
            fake.clear_webhooks()


def files(count: int) -> list[FakeFile]:
    return [FakeFile(uuid.uuid4().bytes * 100, f"/mnt/data/w{i}.csv", cite="real") for i in range(count)]


def visible_watch_messages(host: FunctionsHost, env: AppEnv) -> list[dict[str, Any]]:
    """The run queue's messages a watcher could take now (the delayed polls are not visible)."""
    return [json.loads(text) for text in host.peek(env.runs_queue)]


def wait_for(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_webhook_lands_the_files_of_a_run_without_waiting_for_a_poll(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, webhook: tuple[str, str]
) -> None:
    made = files(3)
    response_id = post_run(host, fake, Scenario([FakeContainer(made)], polls_before_done=10_000)).json()["response_id"]
    assert visible_watch_messages(host, app_env) == []  # the first poll is an hour away

    fake.finish(response_id)  # the run ends on Azure's side: it calls the webhook
    wait_for(lambda: len(visible_watch_messages(host, app_env)) == 1)
    (wake,) = visible_watch_messages(host, app_env)
    assert wake["response_id"] == response_id and wake["seq"] is None and wake["capture"] is False
    (delivery,) = [d for d in fake.webhook_deliveries() if d.response_id == response_id]
    assert delivery.status == 200 and delivery.event_type == "response.completed"

    # The files land at once; the watcher's next look (an hour away here, as every delay is)
    # then sends the completion event.
    host.run_until(lambda: len(landed(app_env, response_id)) == 3, timeout=60)
    assert fake.polls(response_id) == 1  # the webhook's wake-up looked once: no poll before it
    assert landed(app_env, response_id) == {f.file_id: f.content for f in made}
    final = status(host, response_id)
    assert final["phase"] == "persisting" and final["counts"]["persisted"] == 3


def test_capture_all_persists_a_run_the_app_never_saw(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, webhook: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARTIFACTS_WEBHOOK_CAPTURE", "all")
    made = files(2)
    prompt = f"elsewhere {uuid.uuid4().hex}"
    fake.register(prompt, Scenario([FakeContainer(made)], polls_before_done=10_000))
    plain = f"no tools {uuid.uuid4().hex}"
    fake.register(plain, Scenario([]))
    made_elsewhere = fake.create({
        "model": DEPLOYMENT, "input": prompt, "tools": [CODE_INTERPRETER],
        "include": ["code_interpreter_call.outputs"], "background": True, "store": True,
    })["id"]
    no_code = fake.create({  # offered the tool, answered without calling it
        "model": DEPLOYMENT, "input": plain, "tools": [CODE_INTERPRETER],
        "include": ["code_interpreter_call.outputs"], "background": True, "store": True,
    })["id"]

    fake.finish(made_elsewhere)
    fake.finish(no_code)
    wait_for(lambda: len(visible_watch_messages(host, app_env)) == 2)
    assert {m["response_id"]: m["capture"] for m in visible_watch_messages(host, app_env)} == {
        made_elsewhere: True, no_code: True,
    }

    host.run_until(lambda: len(landed(app_env, made_elsewhere)) == 2 and not visible_watch_messages(host, app_env))
    assert landed(app_env, made_elsewhere) == {f.file_id: f.content for f in made}
    assert status(host, made_elsewhere)["counts"]["persisted"] == 2
    assert fake.polls(made_elsewhere) == 1  # the capture's one GET served the first step too
    # The run without a code interpreter: one GET, and nothing recorded.
    assert fake.polls(no_code) == 1
    assert host.http("GET", f"responses/{no_code}").response.status_code == 404
    assert list(app_env.artifacts().list_blobs(name_starts_with=f"{no_code}/")) == []


def _refusal_cases(secret: str) -> list[tuple[str, dict[str, Any], int, str | None]]:
    other = "whsec_" + "b3RoZXIgc2VjcmV0IG9mIDMyIGJ5dGVzIGV4YWN0bHk="
    return [
        ("bad signature", {"signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}, 401, "invalid_signature"),
        ("wrong secret", {"secret": other}, 401, "invalid_signature"),
        ("stale timestamp", {"timestamp": int(time.time()) - 6 * 60}, 401, "invalid_signature"),
        ("future timestamp", {"timestamp": int(time.time()) + 6 * 60}, 401, "invalid_signature"),
        ("no signature", {"signature": ""}, 401, "invalid_signature"),
        ("not JSON", {"body": b"not json at all"}, 400, "invalid_event"),
        ("no response id", {"body": json.dumps({"type": "response.completed", "data": {}}).encode()},
         400, "invalid_event"),
    ]


@pytest.mark.parametrize("case", [c[0] for c in _refusal_cases("")])
def test_refused_deliveries_queue_nothing(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, webhook: tuple[str, str], case: str
) -> None:
    url, secret = webhook
    response_id = post_run(host, fake, Scenario([FakeContainer(files(1))], polls_before_done=10_000)).json()[
        "response_id"
    ]
    (_, overrides, expected_status, _) = next(c for c in _refusal_cases(secret) if c[0] == case)
    options: dict[str, Any] = {"secret": secret, **overrides}
    assert fake.send_webhook(url, "response.completed", response_id, **options) == expected_status
    assert visible_watch_messages(host, app_env) == []


def signed(secret: str, body: bytes, *, webhook_id: str | None = None, age: float = 0) -> dict[str, str]:
    """Headers as Azure OpenAI signs a delivery (the verifying library's own signing)."""
    sent_at = datetime.now(UTC) - timedelta(seconds=age)
    msg_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, sent_at, body.decode()),
        "content-type": "application/json",
    }


def event_bytes(event_type: str, response_id: str) -> bytes:
    return json.dumps({"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": event_type,
                       "created_at": int(time.time()), "data": {"id": response_id}}).encode()


def test_answers_are_json_naming_the_problem(host: FunctionsHost, app_env: AppEnv, webhook: tuple[str, str]) -> None:
    _, secret = webhook
    body = event_bytes("response.completed", "resp_abc")
    for headers, data, code in [
        ({**signed(secret, body), "webhook-signature": "v1,bm90IGl0"}, body, "invalid_signature"),
        (signed(secret, body, age=301), body, "invalid_signature"),
        ({"webhook-id": "msg_1", "webhook-signature": "garbage"}, body, "invalid_signature"),
        (signed(secret, b"[1, 2]"), b"[1, 2]", "invalid_event"),
    ]:
        call = host.http("POST", "webhooks/azure-openai", body=data, headers=headers)
        assert call.response.mimetype == "application/json"
        assert call.json()["error"]["code"] == code
        assert secret not in call.response.get_body().decode()
    ok = host.http("POST", "webhooks/azure-openai", body=body, headers=signed(secret, body)).json()
    assert ok["received"] is True and ok["handled"] is False and "does not follow" in ok["reason"]


def test_what_is_received_but_not_acted_on(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, webhook: tuple[str, str]
) -> None:
    url, secret = webhook
    response_id = post_run(host, fake, Scenario([FakeContainer(files(1))], polls_before_done=10_000)).json()[
        "response_id"
    ]
    # Another event type (batches, fine-tuning), and a response the app does not follow in the
    # default "started" mode: received (200, so Azure does not retry), nothing queued.
    assert fake.send_webhook(url, "batch.completed", "batch_abc123", secret=secret) == 200
    assert fake.send_webhook(url, "response.completed", f"resp_{uuid.uuid4().hex}", secret=secret) == 200
    assert visible_watch_messages(host, app_env) == []

    # The same webhook-id twice: the second delivery does nothing.
    assert fake.send_webhook(url, "response.failed", response_id, secret=secret, webhook_id="msg_replayed1") == 200
    assert fake.send_webhook(url, "response.failed", response_id, secret=secret, webhook_id="msg_replayed1") == 200
    assert [m["response_id"] for m in visible_watch_messages(host, app_env)] == [response_id]
    body = event_bytes("response.failed", response_id)
    headers = signed(secret, body, webhook_id="msg_replayed1")
    again = host.http("POST", "webhooks/azure-openai", body=body, headers=headers).json()
    assert again["handled"] is False and "duplicate" in again["reason"]
    assert len(visible_watch_messages(host, app_env)) == 1


def test_without_a_secret_every_delivery_is_refused(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, webhook: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, secret = webhook
    for unset in ("", "@Microsoft.KeyVault(VaultName=kv;SecretName=azure-openai-webhook-secret)"):
        monkeypatch.setenv("AZURE_OPENAI_WEBHOOK_SECRET", unset)
        assert fake.send_webhook(url, "response.completed", f"resp_{uuid.uuid4().hex}", secret=secret) == 401
        body = event_bytes("response.completed", "resp_abc")
        call = host.http("POST", "webhooks/azure-openai", body=body, headers=signed(secret, body))
        assert call.json()["error"]["code"] == "webhook_not_configured"
    assert visible_watch_messages(host, app_env) == []


def test_the_function_key_is_required(webhook: tuple[str, str]) -> None:
    url, _ = webhook
    assert httpx.post(url.split("?")[0], content=b"{}").status_code == 401


def test_during_a_rotation_both_secrets_are_accepted_and_no_other(
    host: FunctionsHost, app_env: AppEnv, webhook: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, old = webhook
    new = "whsec_" + base64.b64encode(uuid.uuid4().bytes * 2).decode()
    stranger = "whsec_" + base64.b64encode(uuid.uuid4().bytes * 2).decode()
    monkeypatch.setenv("AZURE_OPENAI_WEBHOOK_SECRET", new)
    monkeypatch.setenv("AZURE_OPENAI_WEBHOOK_SECRET_PREVIOUS", old)
    body = event_bytes("response.completed", "resp_abc")
    for secret, expected in ((new, 200), (old, 200), (stranger, 401)):
        call = host.http("POST", "webhooks/azure-openai", body=body, headers=signed(secret, body))
        assert call.response.status_code == expected, secret[:9]
    monkeypatch.setenv("AZURE_OPENAI_WEBHOOK_SECRET", "")  # an operator stops every delivery
    call = host.http("POST", "webhooks/azure-openai", body=body, headers=signed(old, body))
    assert call.response.status_code == 401, "the secret being replaced must not outlive the current one"
    monkeypatch.setenv("AZURE_OPENAI_WEBHOOK_SECRET", new)
    monkeypatch.delenv("AZURE_OPENAI_WEBHOOK_SECRET_PREVIOUS")  # the rotation is over
    call = host.http("POST", "webhooks/azure-openai", body=body, headers=signed(old, body))
    assert call.response.status_code == 401


def test_a_signed_body_nested_without_end_is_a_clean_400(
    host: FunctionsHost, app_env: AppEnv, webhook: tuple[str, str]
) -> None:
    _, secret = webhook
    body = b"[" * 100_000 + b"]" * 100_000
    call = host.http("POST", "webhooks/azure-openai", body=body, headers=signed(secret, body))
    assert call.response.status_code == 400
    assert call.json()["error"] == {"code": "invalid_event", "field": "body",
                                    "message": "body: the signed body is nested deeper than 64 levels"}
