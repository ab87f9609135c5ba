"""The completion event is a CloudEvents 1.0 event (structured JSON) on the events queue, and, with
ARTIFACTS_EVENT_GRID_ENDPOINT set, the same event (the same id) reaches the Event Grid topic: here
a loopback HTTPS receiver that checks what the azure-eventgrid SDK sends, signed with a token the
app's DefaultAzureCredential got from a loopback App Service identity endpoint. A topic that fails
for a while gets the event later (the watcher's chain retries it); the queue still gets one copy."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.messaging import CloudEvent

from shared.errors import ConfigError
from shared.pipeline import events as event_module
from shared.pipeline.events import EVENT_TYPE
from shared.pipeline.watcher import Watcher
from shared.runtime import get_runtime
from shared.settings import load_settings
from shared.storage.messages import WatchMessage
from shared.storage.run_records import RUN_RECORD
from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.cloud_events import check_envelope
from tests.support.event_grid_receiver import BATCH_CONTENT_TYPE, EventGridReceiver
from tests.support.flow import cloud_events, finished, post_run
from tests.support.host import FunctionsHost


def files(count: int) -> list[FakeFile]:
    return [FakeFile(f"file {i}".encode(), f"/mnt/data/f{i}.txt", cite="real") for i in range(count)]


@pytest.fixture
def topic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app_env: AppEnv) -> Iterator[EventGridReceiver]:
    receiver = EventGridReceiver(tmp_path)
    for name, value in receiver.environment().items():
        monkeypatch.setenv(name, value)
    for name in ("AZURE_CLIENT_ID", "MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT"):
        monkeypatch.delenv(name, raising=False)
    yield receiver
    receiver.stop()


def run_record(env: AppEnv, response_id: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        env.status().get_blob_client(f"{response_id}/{RUN_RECORD}").download_blob().readall()
    )
    return document


def without_moments(data: dict[str, Any]) -> dict[str, Any]:
    """The data without what differs between copies of one event (the send time, the links)."""
    kept = {key: value for key, value in data.items() if key != "sent_at"}
    kept["artifacts"] = [{k: v for k, v in a.items() if k not in ("url", "url_expires_at")}
                         for a in data.get("artifacts", [])]
    return kept


def test_the_queue_event_is_a_cloudevent_with_the_run_as_subject_and_the_outcome_as_data(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTIFACTS_EVENT_SOURCE", "/subscriptions/s/resourceGroups/g/providers/Microsoft.Web/sites/app")
    response_id = post_run(host, fake, Scenario([FakeContainer(files(2))])).json()["response_id"]
    final = finished(host, response_id)
    (document,) = cloud_events(host, app_env)
    data = check_envelope(document)
    parsed: CloudEvent[Any] = CloudEvent.from_json(json.dumps(document))  # any CloudEvents reader takes it
    assert parsed.type == EVENT_TYPE == document["type"]
    assert parsed.id == final["event_id"] and parsed.subject == response_id
    assert parsed.source == "/subscriptions/s/resourceGroups/g/providers/Microsoft.Web/sites/app"
    assert document["datacontenttype"] == "application/json"
    assert data["counts"] == {"pending": 0, "persisted": 2, "failed": 0}
    assert data["type"] == "artifacts.completed" and data["v"] == 1  # version 1's event, whole, as data


def test_the_source_defaults_and_a_bad_one_or_a_plain_http_topic_is_refused(app_env: AppEnv) -> None:
    base = {"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com", "AZURE_OPENAI_DEPLOYMENT": "d",
            "AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    assert load_settings(base).event_source == "/code-interpreter-artifacts"
    assert load_settings(base).event_grid_endpoint is None
    for name, value in (("ARTIFACTS_EVENT_SOURCE", "not a uri"),
                        ("ARTIFACTS_EVENT_GRID_ENDPOINT", "http://t.westeurope-1.eventgrid.azure.net/api/events"),
                        ("ARTIFACTS_EVENT_GRID_ENDPOINT", "https://t.eventgrid.azure.net/api/events?aeg-sas-key=x")):
        with pytest.raises(ConfigError) as raised:
            load_settings({**base, name: value})
        assert name in str(raised.value)


def test_with_a_topic_the_same_event_reaches_it_as_the_sdk_sends_cloudevents(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, topic: EventGridReceiver
) -> None:
    response_id = post_run(host, fake, Scenario([FakeContainer(files(2))])).json()["response_id"]
    finished(host, response_id)
    host.run_until(lambda: bool(topic.events))
    (queued,) = cloud_events(host, app_env)
    (delivery,) = topic.deliveries
    (published,) = delivery.events
    assert topic.refused == []
    headers = {name.lower(): value for name, value in delivery.headers.items()}
    assert headers["content-type"] == BATCH_CONTENT_TYPE
    assert headers["authorization"].startswith("Bearer ")
    assert "aeg-sas-key" not in headers and "aeg-sas-token" not in headers
    assert delivery.query["api-version"] == ["2018-01-01"]
    # The token came from the identity endpoint, for Event Grid.
    assert any(q.get("resource") == ["https://eventgrid.azure.net"] for q in topic.state.token_requests)
    # The same event: id, type, source, subject, data (but for the send time and fresh links).
    data = check_envelope(published)
    assert published["id"] == queued["id"] == data["event_id"]
    for attribute in ("specversion", "type", "source", "subject", "datacontenttype"):
        assert published[attribute] == queued[attribute], attribute
    assert without_moments(data) == without_moments(queued["data"])
    assert run_record(app_env, response_id)["event_published"] is True


def test_a_topic_failing_for_a_while_gets_the_event_later_and_the_queue_gets_one_copy(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, topic: EventGridReceiver
) -> None:
    topic.fail()
    response_id = post_run(host, fake, Scenario([FakeContainer(files(1))])).json()["response_id"]
    final = finished(host, response_id)
    assert run_record(app_env, response_id)["event_published"] is False  # owed, and not lost
    # The outage goes on: the chain's next step tries again, and again.
    host.run_until(lambda: run_record(app_env, response_id)["publish_attempts"] >= 3)
    assert topic.events == [] and topic.failed >= 3
    topic.fail(False)
    host.run_until(lambda: bool(topic.events))
    (published,) = topic.events
    assert published["id"] == final["event_id"]
    record = run_record(app_env, response_id)
    assert record["event_published"] is True and record["publish_attempts"] >= 3
    # Nothing more follows: the chain ended with the publish, and the queue holds one event.
    host.run_until(lambda: not host.peek(app_env.runs_queue), timeout=10)
    assert [e["id"] for e in cloud_events(host, app_env)] == [final["event_id"]]
    assert len(topic.events) == 1


def test_a_run_completed_without_a_topic_owes_it_nothing(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    response_id = post_run(host, fake, Scenario([FakeContainer(files(1))])).json()["response_id"]
    finished(host, response_id)
    record = run_record(app_env, response_id)
    assert record["event_sent"] is True and record["event_published"] is True


def test_an_event_too_large_for_a_message_names_the_blob_holding_the_whole_cloudevent(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_module, "MAX_MESSAGE_BYTES", 1500)  # three files do not fit
    response_id = post_run(host, fake, Scenario([FakeContainer(files(3))])).json()["response_id"]
    final = finished(host, response_id)
    (queued,) = cloud_events(host, app_env)
    data = queued["data"]
    assert data["artifacts_truncated"] is True and "artifacts" not in data
    container, _, name = data["details_blob"].partition("/")
    assert container == app_env.status_container and name == f"{response_id}/_event.json"
    whole = json.loads(app_env.status().get_blob_client(name).download_blob().readall())
    check_envelope(whole)
    assert whole["id"] == queued["id"] == final["event_id"]
    assert len(whole["data"]["artifacts"]) == 3


def test_a_completing_step_that_died_before_publishing_leaves_it_to_its_safety_net(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, topic: EventGridReceiver
) -> None:
    """The queue's event was noted sent, then the step died: a wake-up publishes nothing (it would
    race the completing step), the completing step's own message (its safety net) publishes, and
    the queue gets no second copy."""
    response_id = post_run(host, fake, Scenario([FakeContainer(files(1))])).json()["response_id"]
    final = finished(host, response_id)
    host.run_until(lambda: bool(topic.events))
    (queued,) = cloud_events(host, app_env)
    runtime = get_runtime()
    stored = runtime.status_records.runs.read(response_id)
    assert stored is not None and stored.record.event_published
    died = copy.deepcopy(stored.record)  # as the completing step left it when it died before publishing
    died.event_published = False
    runtime.status_records.runs.replace(died, stored.etag)
    before = len(topic.events)

    Watcher(runtime).handle(WatchMessage(response_id))  # a wake-up (a webhook, a cancel)
    assert len(topic.events) == before and run_record(app_env, response_id)["event_published"] is False

    Watcher(runtime).handle(WatchMessage(response_id, died.seq, died.step_token))  # the safety net
    assert len(topic.events) == before + 1
    assert topic.events[-1]["id"] == queued["id"] == final["event_id"]
    assert run_record(app_env, response_id)["event_published"] is True
    assert cloud_events(host, app_env) == []  # the queue's event was sent already: not again
