"""Telemetry: one run is one trace, from the POST through the watcher's steps and every download
to the event; the metrics count what happened; no secret, prompt or file content gets in."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import API_KEY, AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.flow import events, finished
from tests.support.host import FunctionsHost

_SPANS = InMemorySpanExporter()
_METRICS = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def _sdk_providers() -> Iterator[None]:
    """The SDK in memory, as Application Insights or an OTLP collector would receive it."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_SPANS))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[_METRICS]))
    yield


def spans_of(trace_id: int) -> list[ReadableSpan]:
    return [s for s in _SPANS.get_finished_spans() if s.context is not None and s.context.trace_id == trace_id]


def metric_points() -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    data = _METRICS.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def test_one_run_is_one_trace_from_the_post_to_the_event(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    made = [FakeFile(os.urandom(700), f"/mnt/data/t{i}.bin", cite="real") for i in range(3)]
    prompt = f"secret plan {uuid.uuid4().hex}"
    fake.register(prompt, Scenario([FakeContainer(made)], polls_before_done=2))
    answer = host.http("POST", "responses", body=json.dumps({"input": prompt}).encode()).json()
    response_id = answer["response_id"]
    finished(host, response_id)

    (post,) = [s for s in _SPANS.get_finished_spans()
               if s.name == "start_run" and (s.attributes or {}).get("response_id") == response_id]
    assert post.context is not None
    in_trace = spans_of(post.context.trace_id)
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in in_trace:
        by_name.setdefault(span.name, []).append(span)

    # The watcher's steps: the first continues the POST, each later one the step before it.
    watch = sorted(by_name["watch_run"], key=lambda s: s.start_time or 0)
    assert len(watch) >= 3  # two looks while running, the end, then the artifacts
    assert all((s.attributes or {}).get("response_id") == response_id for s in watch)
    assert watch[0].parent is not None and watch[0].parent.span_id == post.context.span_id
    # Every download, under the watcher step that fanned it out.
    downloads = by_name["persist_artifact"]
    assert {(s.attributes or {}).get("file_id") for s in downloads} == {f.file_id for f in made}
    watch_ids = {s.context.span_id for s in watch if s.context is not None}
    assert all(s.parent is not None and s.parent.span_id in watch_ids for s in downloads)
    assert {(s.attributes or {}).get("outcome") for s in downloads} == {"persisted"}
    assert sorted((s.attributes or {}).get("bytes") for s in downloads) == [700, 700, 700]  # type: ignore[type-var]
    # The event carries the run's trace to its consumers.
    (event,) = events(host, app_env)
    assert event["traceparent"].split("-")[1] == format(post.context.trace_id, "032x")

    points = metric_points()
    assert sum(p.value for p in points["artifacts.files.persisted"]) >= 3
    assert sum(p.value for p in points["artifacts.bytes.persisted"]) >= 2100
    assert points["artifacts.run.polls"] and points["artifacts.run.time_to_last_artifact"]

    # Nothing secret in any span, event or metric attribute: no key, no prompt, no file content.
    texts = [json.dumps({"name": s.name, "attributes": dict(s.attributes or {}),
                         "events": [dict(e.attributes or {}) for e in s.events]}, default=str)
             for s in _SPANS.get_finished_spans()]
    texts += [json.dumps(dict(p.attributes or {}), default=str) for ps in points.values() for p in ps]
    for text in texts:
        assert API_KEY not in text
        assert prompt not in text
        for file in made:
            assert file.content.hex()[:32] not in text


def test_a_wake_up_continues_the_runs_trace(host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv) -> None:
    made = [FakeFile(b"x" * 100, "/mnt/data/c.csv", cite="real")]
    prompt = f"cancel me {uuid.uuid4().hex}"
    fake.register(prompt, Scenario([FakeContainer(made)], polls_before_done=10_000))
    response_id = host.http("POST", "responses", body=json.dumps({"input": prompt}).encode()).json()["response_id"]
    assert host.http("POST", f"responses/{response_id}/cancel").response.status_code == 202
    finished(host, response_id)
    (post,) = [s for s in _SPANS.get_finished_spans()
               if s.name == "start_run" and (s.attributes or {}).get("response_id") == response_id]
    assert post.context is not None
    steps = [s for s in _SPANS.get_finished_spans()
             if s.name == "watch_run" and (s.attributes or {}).get("response_id") == response_id]
    assert steps and all(s.context is not None and s.context.trace_id == post.context.trace_id for s in steps)
    # The step the cancel woke links to the cancel's request.
    (cancel,) = [s for s in _SPANS.get_finished_spans()
                 if s.name == "cancel_response" and (s.attributes or {}).get("response_id") == response_id]
    assert cancel.context is not None
    assert any(link.context.span_id == cancel.context.span_id for s in steps for link in s.links)


def test_queue_depths_are_reported(host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv) -> None:
    poison = host.queue(f"{app_env.queue}-poison")
    poison.send_message("eyJ2IjogMX0=")
    fired = host.timer("monitor_queues")  # through the worker, as the schedule fires it
    assert fired.error is None
    reported = {dict(p.attributes)["queue"]: p.value for p in metric_points()["artifacts.queue.depth"]}
    assert reported[f"{app_env.queue}-poison"] == 1
    assert reported[app_env.events_queue] == 0
    ages = {dict(p.attributes)["queue"]: p.value for p in metric_points()["artifacts.queue.oldest_age_seconds"]}
    assert ages[f"{app_env.queue}-poison"] >= 0
