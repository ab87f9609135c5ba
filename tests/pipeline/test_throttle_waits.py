"""Sustained throttling (429) on the downloads: the last delivery waits on the queue, honouring
Retry-After, within a bounded total, instead of marking the file failed while its container is
still alive; once the waits are spent it fails with a reason that says so."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from shared.errors import InvalidMessage
from shared.pipeline import persist
from shared.storage.messages import ArtifactMessage
from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.flow import poisoned, spent_into_poison, start_and_discover, status
from tests.support.host import FunctionsHost

THROTTLED = {"error": {"code": "429", "message": "Requests to the API have exceeded the rate limit."}}


@pytest.fixture
def last_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every delivery is the last, and makes one attempt: each 429 reaches the throttling wait."""
    monkeypatch.setenv("AzureFunctionsJobHost__extensions__queues__maxDequeueCount", "1")
    monkeypatch.setenv("ARTIFACTS_DOWNLOAD_ATTEMPTS", "1")


def discovered_file(host: FunctionsHost, fake: FakeAzureOpenAI) -> tuple[str, FakeFile]:
    file = FakeFile(b"t,v\n1,2\n", "/mnt/data/throttled.csv", cite="real")
    return start_and_discover(host, fake, Scenario([FakeContainer([file])]))["response_id"], file


def queued(host: FunctionsHost, env: AppEnv) -> list[dict[str, Any]]:
    return [json.loads(base64.b64decode(m.content)) for m in host.queue(env.queue).peek_messages(max_messages=32)]


@pytest.mark.usefixtures("last_delivery")
def test_a_throttled_last_delivery_waits_on_the_queue(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    response_id, _ = discovered_file(host, fake)
    fake.fail_next("/content", 429, THROTTLED, headers={"Retry-After": "120"})
    (delivery,) = host.deliver("persist_artifact", max_rounds=1)
    assert delivery.error is None, repr(delivery.error)  # completed: the message waits instead
    assert poisoned(host, app_env) == 0
    properties = host.queue(app_env.queue).get_queue_properties()
    assert properties.approximate_message_count == 1 and queued(host, app_env) == []  # waiting, invisible
    assert status(host, response_id)["artifacts"][0]["state"] == "pending"


@pytest.mark.usefixtures("last_delivery")
def test_a_file_throttled_for_long_lands_once_throttling_clears(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(persist, "THROTTLE_FIRST_WAIT_SECONDS", 1)  # waits of 1 s, for the test
    monkeypatch.setattr(persist, "THROTTLE_WAIT_SECONDS", 3)
    response_id, file = discovered_file(host, fake)
    fake.fail_next("/content", 429, THROTTLED, headers={"retry-after-ms": "10"}, times=2)
    deliveries = host.deliver("persist_artifact", until_empty=True, max_rounds=10)
    assert [d.error for d in deliveries] == [None, None, None]  # waited twice, then stored
    assert poisoned(host, app_env) == 0
    artifact = status(host, response_id)["artifacts"][0]
    assert artifact["state"] == "persisted"
    assert app_env.artifacts().download_blob(artifact["blob_name"]).readall() == file.content


def test_once_the_throttling_waits_are_spent_the_file_fails_with_its_reason(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTIFACTS_DOWNLOAD_ATTEMPTS", "1")
    monkeypatch.setattr(persist, "THROTTLE_FIRST_WAIT_SECONDS", 1)
    monkeypatch.setattr(persist, "THROTTLE_WAIT_SECONDS", 1)
    response_id, _ = discovered_file(host, fake)
    fake.fail_next("/content", 429, THROTTLED, times=100)
    completed, poison, artifact = spent_into_poison(host, app_env, response_id)
    # Five deliveries; the last waits once (1 s, the whole budget); five more, then the poison queue.
    assert completed == [False] * 4 + [True] + [False] * 5
    assert poison == 1
    assert artifact["state"] == "failed" and artifact["code"] == "retries_exhausted"
    assert "429" in artifact["reason"] and "after waiting 1 s for throttling to clear" in artifact["reason"]


def test_each_wait_honours_retry_after_and_the_total_is_bounded() -> None:
    first, total = persist.THROTTLE_FIRST_WAIT_SECONDS, persist.THROTTLE_WAIT_SECONDS
    assert persist.throttle_wait(0, None) == first
    assert persist.throttle_wait(0, first * 2.5) == round(first * 2.5)  # the server asked for longer
    assert persist.throttle_wait(first, None) == first  # then doubling: the total so far again
    assert persist.throttle_wait(2 * first, 1.0) == 2 * first  # never sooner than the schedule
    assert persist.throttle_wait(total - 5, None) == 5  # the last one ends with the budget
    assert persist.throttle_wait(0, 10 * total) == total  # a Retry-After past the budget is cut to it
    assert persist.throttle_wait(total, None) is None  # spent
    waited = 0
    while (wait := persist.throttle_wait(waited, None)) is not None:
        waited += wait
    assert waited == total


def test_the_time_waited_travels_only_in_the_message() -> None:
    plain = ArtifactMessage.from_json('{"response_id": "resp_1", "container_id": "cntr_1", "file_id": "cfile_1"}')
    assert plain.throttle_waited == 0 and "throttle_waited" not in plain.to_json()
    waited = json.loads(plain.to_json()) | {"throttle_waited": 180}
    again = ArtifactMessage.from_json(json.dumps(waited))
    assert again.throttle_waited == 180 and json.loads(again.to_json())["throttle_waited"] == 180
    assert "throttle_waited" not in again.describe()
    for bad in (-1, True, "60", 10**9):
        with pytest.raises(InvalidMessage, match="throttle_waited"):
            ArtifactMessage.from_json(json.dumps(waited | {"throttle_waited": bad}))
