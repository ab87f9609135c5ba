"""POST /api/responses: bad input gets a 4xx JSON error naming the field, and no call goes out."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.conftest import API_KEY, DEPLOYMENT, AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.flow import events, finished, post_run
from tests.support.host import FunctionsHost

BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("empty body", b"", "body"),
    ("not JSON", b"{nope", "body"),
    ("not UTF-8", b"\xff\xfe{}", "body"),
    ("a list", b"[]", "body"),
    ("a string", b'"hi"', "body"),
    ("missing input", b"{}", "input"),
    ("null input", b'{"input": null}', "input"),
    ("empty input", b'{"input": "  "}', "input"),
    ("number input", b'{"input": 5}', "input"),
    ("empty input list", b'{"input": []}', "input"),
    ("input list of strings", b'{"input": ["a"]}', "input"),
    ("unknown field", b'{"input": "x", "stream": true}', "stream"),
    ("instructions not a string", b'{"input": "x", "instructions": 1}', "instructions"),
    ("empty model", b'{"input": "x", "model": ""}', "model"),
    ("model with a newline", b'{"input": "x", "model": "a\\nb"}', "model"),
    ("file_ids not a list", b'{"input": "x", "file_ids": "file-1"}', "file_ids"),
    ("file id with a slash", b'{"input": "x", "file_ids": ["../x"]}', "file_ids"),
    ("file id with a query", b'{"input": "x", "file_ids": ["a?b=c"]}', "file_ids"),
    ("previous id with a path", b'{"input": "x", "previous_response_id": "resp/1"}', "previous_response_id"),
    ("max_output_tokens a string", b'{"input": "x", "max_output_tokens": "100"}', "max_output_tokens"),
    ("max_output_tokens a bool", b'{"input": "x", "max_output_tokens": true}', "max_output_tokens"),
    ("max_output_tokens too small", b'{"input": "x", "max_output_tokens": 3}', "max_output_tokens"),
    ("temperature too high", b'{"input": "x", "temperature": 2.5}', "temperature"),
    ("temperature a string", b'{"input": "x", "temperature": "hot"}', "temperature"),
    ("reasoning a string", b'{"input": "x", "reasoning": "high"}', "reasoning"),
    ("metadata value a number", b'{"input": "x", "metadata": {"a": 1}}', "metadata"),
    ("metadata a list", b'{"input": "x", "metadata": ["a"]}', "metadata"),
    ("tool_choice unknown", b'{"input": "x", "tool_choice": "sometimes"}', "tool_choice"),
]


@pytest.mark.parametrize(("label", "body", "field"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_body_gets_400_naming_the_field(
    host: FunctionsHost, fake: FakeAzureOpenAI, label: str, body: bytes, field: str
) -> None:
    before = len(fake.requests)
    call = host.http("POST", "responses", body=body)
    assert call.response.status_code == 400
    assert call.response.mimetype == "application/json"
    error = call.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["field"] == field
    assert any(d["field"] == field and d["problem"] for d in error["details"])
    assert len(fake.requests) == before  # validated before any call goes out
    assert call.queued == {}


def test_oversized_body_gets_413(host: FunctionsHost, fake: FakeAzureOpenAI) -> None:
    before = len(fake.requests)
    call = host.http("POST", "responses", body=json.dumps({"input": "x" * (2 * 1024 * 1024)}).encode())
    assert call.response.status_code == 413
    assert call.json()["error"]["field"] == "body"
    assert len(fake.requests) == before


def test_options_pass_through(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTIFACTS_ALLOWED_MODELS", f"{DEPLOYMENT}, other-deployment")
    prompt = f"options {uuid.uuid4().hex}"
    fake.register(prompt, Scenario([FakeContainer([FakeFile(b"1", "/mnt/data/a.txt")])]))
    earlier = fake.create(
        {"model": "m", "input": "earlier turn", "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}],
         "include": ["code_interpreter_call.outputs"]}
    )
    options: dict[str, Any] = {
        "model": "other-deployment",
        "previous_response_id": earlier["id"],
        "max_output_tokens": 2000,
        "temperature": 0.2,
        "reasoning": {"effort": "low"},
        "metadata": {"team": "finance"},
        "tool_choice": "required",
    }
    call = host.http("POST", "responses", body=json.dumps({"input": prompt, **options}).encode())
    assert call.response.status_code == 202
    sent = fake.last_response_body
    assert sent is not None
    for key, value in options.items():
        assert sent[key] == value


def test_upstream_error_becomes_502_without_secrets(host: FunctionsHost, fake: FakeAzureOpenAI) -> None:
    fake.fail_next(
        "/openai/v1/responses",
        400,
        {"error": {"code": "model_not_found", "message": f"deployment missing (key {API_KEY})"}},
    )
    call = host.http("POST", "responses", body=b'{"input": "hello"}')
    assert call.response.status_code == 502
    text = call.response.get_body().decode()
    assert API_KEY not in text
    error = call.json()["error"]
    assert error["code"] == "upstream_error"
    assert error["upstream"]["status"] == 400
    assert error["upstream"]["code"] == "model_not_found"
    assert call.queued == {}


def test_an_upstream_400_naming_a_field_names_it_to_the_caller(host: FunctionsHost, fake: FakeAzureOpenAI) -> None:
    # What Azure answers a reasoning model given a temperature.
    fake.fail_next("/openai/v1/responses", 400, {"error": {
        "code": "unsupported_parameter", "type": "invalid_request_error", "param": "temperature",
        "message": "Unsupported parameter: 'temperature' is not supported with this model.",
    }})
    call = host.http("POST", "responses", body=b'{"input": "hello", "temperature": 0.2}')
    assert call.response.status_code == 400
    error = call.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["field"] == "temperature"
    assert error["message"].startswith("temperature: ")
    assert error["upstream"]["code"] == "unsupported_parameter"


def test_throttled_run_is_retried(host: FunctionsHost, fake: FakeAzureOpenAI) -> None:
    fake.fail_next("/openai/v1/responses", 429, {"error": {"code": "429", "message": "slow down"}},
                   headers={"retry-after-ms": "10"})
    call = host.http("POST", "responses", body=b'{"input": "hello"}')
    assert call.response.status_code == 202


def test_missing_settings_get_a_clear_500(host: FunctionsHost, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT")
    call = host.http("POST", "responses", body=b'{"input": "hello"}')
    assert call.response.status_code == 500
    error = call.json()["error"]
    assert error["code"] == "configuration_error"
    assert "AZURE_OPENAI_ENDPOINT" in error["message"]


def test_run_without_files(host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv) -> None:
    response_id = post_run(host, fake, Scenario([], output_text="No files today.")).json()["response_id"]
    final = finished(host, response_id)
    assert final["artifacts"] == []
    assert final["output_text"].startswith("No files today.")
    assert final["complete"] is True
    (event,) = events(host, app_env)
    assert event["counts"] == {"pending": 0, "persisted": 0, "failed": 0}
    assert host.queue(app_env.queue).peek_messages() == []


@pytest.mark.parametrize("allowed", [None, "gpt-other, gpt-another"])
def test_a_model_outside_the_allowlist_is_refused_before_any_call(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch, allowed: str | None
) -> None:
    if allowed is not None:
        monkeypatch.setenv("ARTIFACTS_ALLOWED_MODELS", allowed)
    created = fake.created_count()
    body = json.dumps({"input": "chart", "model": "the-expensive-one"}).encode()
    call = host.http("POST", "responses", body=body, headers={"content-type": "application/json"})
    assert call.response.status_code == 400
    error = call.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_request", "model")
    assert "ARTIFACTS_ALLOWED_MODELS" in error["message"]
    assert fake.created_count() == created
    named = host.http("POST", "responses", body=json.dumps({"input": "chart", "model": DEPLOYMENT}).encode(),
                      headers={"content-type": "application/json"})
    assert named.response.status_code == 202  # the configured deployment is always allowed
