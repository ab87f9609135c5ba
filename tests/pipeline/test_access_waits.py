"""Access refused right after a deployment (role assignments still propagating): a file waits on
the queue for access instead of being spent into the poison queue, and fails, with a reason,
only once the waits are over."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from typing import Any

import pytest

from shared.errors import InvalidMessage
from shared.pipeline import persist
from shared.storage.messages import ArtifactMessage
from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.azurite import Azurite
from tests.support.flow import poisoned, spent_into_poison, start_and_discover, status
from tests.support.host import FunctionsHost

REFUSED = {"error": {"code": "PermissionDenied", "message": "The principal lacks the required data action."}}


def discovered_file(host: FunctionsHost, fake: FakeAzureOpenAI, content: bytes) -> tuple[str, FakeFile]:
    file = FakeFile(content, "/mnt/data/early.csv", cite="real")
    return start_and_discover(host, fake, Scenario([FakeContainer([file])]))["response_id"], file


def queued(host: FunctionsHost, env: AppEnv) -> list[dict[str, Any]]:
    return [json.loads(base64.b64decode(m.content)) for m in host.queue(env.queue).peek_messages(max_messages=32)]


def test_a_refused_last_delivery_waits_on_the_queue_instead_of_the_poison_queue(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(persist, "AUTH_WAIT_SECONDS", (3600, 7200))
    monkeypatch.setenv("AzureFunctionsJobHost__extensions__queues__maxDequeueCount", "1")  # the first is the last
    response_id, _ = discovered_file(host, fake, b"a,b\n1,2\n")
    fake.fail_next("/content", 403, REFUSED)
    (delivery,) = host.deliver("persist_artifact", max_rounds=1)
    assert delivery.error is None  # completed: the host spends no delivery on it
    properties = host.queue(app_env.queue).get_queue_properties()
    assert properties.approximate_message_count == 1 and queued(host, app_env) == []  # waiting, invisible
    assert poisoned(host, app_env) == 0
    assert status(host, response_id)["artifacts"][0]["state"] == "pending"


def test_a_file_refused_by_azure_openai_lands_once_access_is_granted(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(persist, "AUTH_WAIT_SECONDS", (0, 0))  # visible again at once, for the test
    response_id, file = discovered_file(host, fake, b"x,y\n3,4\n")
    fake.fail_next("/content", 401, REFUSED, times=10)  # every delivery of the message and of its first wait
    with caplog.at_level(logging.WARNING, logger="shared.pipeline.persist"):
        deliveries = host.deliver("persist_artifact", until_empty=True, max_rounds=20)
    # Five deliveries fail as usual; the fifth sends the message again to wait, twice; then it lands.
    assert [d.dequeue_count for d in deliveries] == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1]
    assert [d.error is None for d in deliveries] == [False] * 4 + [True] + [False] * 4 + [True, True]
    assert [r.getMessage().split("; ")[-1] for r in caplog.records if "waiting" in r.getMessage()] == [
        "waiting 0 s for access (wait 1 of 2: role assignments may still be propagating)",
        "waiting 0 s for access (wait 2 of 2: role assignments may still be propagating)",
    ]
    assert poisoned(host, app_env) == 0
    artifact = status(host, response_id)["artifacts"][0]
    assert artifact["state"] == "persisted"
    assert app_env.artifacts().download_blob(artifact["blob_name"]).readall() == file.content


def test_a_file_refused_by_storage_waits_with_a_count_in_its_message(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(persist, "AUTH_WAIT_SECONDS", (0, 0))
    monkeypatch.setenv("AzureFunctionsJobHost__extensions__queues__maxDequeueCount", "1")
    response_id, file = discovered_file(host, fake, b"stored late")
    # Blob Storage refuses the app (403, as before its role assignment arrives); its queues do not.
    monkeypatch.setenv("ARTIFACTS_STORAGE_CONNECTION", azurite.refused_connection_string())
    (delivery,) = host.deliver("persist_artifact", max_rounds=1)
    assert delivery.error is None
    (waiting,) = queued(host, app_env)
    assert waiting["auth_waits"] == 1 and waiting["file_id"] == file.file_id
    monkeypatch.delenv("ARTIFACTS_STORAGE_CONNECTION")  # the role assignment arrived
    assert [d.error for d in host.deliver("persist_artifact", max_rounds=1)] == [None]
    artifact = status(host, response_id)["artifacts"][0]
    assert artifact["state"] == "persisted"
    assert "auth_waits" not in artifact  # the message's count, not the artifact's
    assert app_env.artifacts().download_blob(artifact["blob_name"]).readall() == file.content


def test_once_the_waits_are_spent_a_refusal_fails_with_its_reason(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(persist, "AUTH_WAIT_SECONDS", (0,))
    response_id, _ = discovered_file(host, fake, b"never")
    fake.fail_next("/content", 403, REFUSED, times=100)
    completed, poison, artifact = spent_into_poison(host, app_env, response_id)
    assert completed == [False] * 4 + [True] + [False] * 5
    assert poison == 1
    assert artifact["state"] == "failed" and artifact["code"] == "retries_exhausted"
    assert "403" in artifact["reason"] and "after waiting 0 min for access" in artifact["reason"]
    assert "role assignments" in artifact["reason"]


def test_the_wait_count_travels_only_in_the_message() -> None:
    plain = ArtifactMessage.from_json('{"response_id": "resp_1", "container_id": "cntr_1", "file_id": "cfile_1"}')
    assert plain.auth_waits == 0 and not plain.names_blob
    assert "auth_waits" not in plain.to_json() and "blob_name" not in plain.to_json()  # still looked up by ids
    waited = dataclasses.replace(plain, auth_waits=2, names_blob=True)
    again = ArtifactMessage.from_json(waited.to_json())
    assert (again.auth_waits, again.names_blob, again.blob_name) == (2, True, "resp_1/cfile_1/cfile_1")
    assert "auth_waits" not in again.describe() and "names_blob" not in again.describe()
    for bad in (-1, True, "2", 10**6):
        with pytest.raises(InvalidMessage, match="auth_waits"):
            ArtifactMessage.from_json(json.dumps({**json.loads(waited.to_json()), "auth_waits": bad}))
