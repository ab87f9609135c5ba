"""Capture mode (``ARTIFACTS_WEBHOOK_CAPTURE=all``) under throttling: a capture that cannot read the
run looks again later, as the watcher does, instead of failing its delivery until the poison
queue gives the run up; and the poison queue never invents a run the app never recorded."""

from __future__ import annotations

import base64
import uuid

import pytest

from shared.runtime import get_runtime
from shared.storage.messages import WatchMessage
from shared.storage.run_records import RunRecord
from tests.conftest import DEPLOYMENT, AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.flow import events, landed
from tests.support.host import FunctionsHost

CODE_INTERPRETER = {"type": "code_interpreter", "container": {"type": "auto"}}
QUICK_RETRY = {"retry-after-ms": "1"}  # the in-process retries do not wait: each look fails fast


@pytest.fixture
def capture_all(app_env: AppEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARTIFACTS_WEBHOOK_CAPTURE", "all")
    monkeypatch.setenv("ARTIFACTS_POLL_MIN_SECONDS", "1")
    monkeypatch.setenv("ARTIFACTS_POLL_MAX_SECONDS", "1")


def made_elsewhere(fake: FakeAzureOpenAI, scenario: Scenario) -> str:
    prompt = f"elsewhere {uuid.uuid4().hex}"
    fake.register(prompt, scenario)
    response_id: str = fake.create({
        "model": DEPLOYMENT, "input": prompt, "tools": [CODE_INTERPRETER],
        "include": ["code_interpreter_call.outputs"], "background": True, "store": True,
    })["id"]
    return response_id


def enqueue(host: FunctionsHost, queue: str, message: WatchMessage) -> None:
    host.queue(queue).send_message(base64.b64encode(message.to_json().encode()).decode())


def record(response_id: str) -> RunRecord | None:
    stored = get_runtime().status_records.runs.read(response_id)
    return None if stored is None else stored.record


def queues_empty(host: FunctionsHost, env: AppEnv) -> bool:
    """Nothing left on the run queue or its poison queue, visible or delayed."""
    return all(
        host.queue(name).get_queue_properties().approximate_message_count == 0
        for name in (env.runs_queue, f"{env.runs_queue}-poison")
    )


def test_a_throttled_capture_looks_again_and_persists_the_run(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, capture_all: None
) -> None:
    made = [FakeFile(uuid.uuid4().bytes * 50, f"/mnt/data/t{i}.csv", cite="real") for i in range(2)]
    response_id = made_elsewhere(fake, Scenario([FakeContainer(made)]))
    # Throttled for longer than the host's five deliveries of one message would try.
    deliveries = host.max_dequeue_count
    fake.fail_next(f"/responses/{response_id}", 429, headers=QUICK_RETRY, times=4 * deliveries + 4)
    enqueue(host, app_env.runs_queue, WatchMessage(response_id, capture=True))

    def settled() -> bool:
        found = record(response_id)
        return found is not None and found.event_sent

    host.run_until(settled, timeout=90)
    final = record(response_id)
    assert final is not None
    assert final.given_up is None, final.given_up
    assert landed(app_env, response_id) == {f.file_id: f.content for f in made}
    (event,) = events(host, app_env)
    assert event["given_up"] is None and event["complete"] is True


def test_a_capture_that_never_reads_the_run_stops_quietly_after_run_max_hours(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, capture_all: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTIFACTS_RUN_MAX_HOURS", "0.001")  # 3.6 s of looks
    response_id = made_elsewhere(fake, Scenario([]))  # answered without the code interpreter
    fake.fail_next(f"/responses/{response_id}", 503, headers=QUICK_RETRY, times=10_000)
    enqueue(host, app_env.runs_queue, WatchMessage(response_id, capture=True))

    deliveries = host.run_until(lambda: queues_empty(host, app_env), timeout=90)
    assert all(d.error is None for d in deliveries), [d.error for d in deliveries if d.error]
    assert len(deliveries) >= 2  # it looked again rather than failing the delivery
    assert record(response_id) is None  # no run invented, given up or otherwise
    assert events(host, app_env) == []


@pytest.mark.parametrize("capture", [True, False])
def test_a_poisoned_message_for_a_run_never_recorded_records_and_sends_nothing(
    host: FunctionsHost, app_env: AppEnv, capture: bool
) -> None:
    response_id = f"resp_{uuid.uuid4().hex}"
    enqueue(host, f"{app_env.runs_queue}-poison", WatchMessage(response_id, capture=capture))
    assert [d.error for d in host.deliver("give_up_run")] == [None]
    assert record(response_id) is None
    assert host.http("GET", f"responses/{response_id}").response.status_code == 404
    assert events(host, app_env) == []
