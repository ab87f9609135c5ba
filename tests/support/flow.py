"""Driving a run through the app as a caller and the host would: POST, queues, status, events."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, Scenario
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


def finished(
    host: FunctionsHost, response_id: str, *, timeout: float = 60, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run every queue until the run's completion event is sent; its final status (as ``headers``' caller)."""
    host.run_until(lambda: status(host, response_id, headers)["event_id"] is not None, timeout=timeout)
    return status(host, response_id, headers)


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
    """Take the completion events off the events queue."""
    return [json.loads(text) for text in host.messages(env.events_queue)]
