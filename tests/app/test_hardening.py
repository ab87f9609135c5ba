"""Bounded deliveries, honest failure codes, bounded runs, and the paths a careful operator tries.

Each test fails without its fix: a delivery that outlives its share of functionTimeout, a route's
404 read as "file gone", an unbounded run, and the failures of Storage around the HTTP functions.
"""

from __future__ import annotations

import os

import pytest

from shared.api import start
from shared.host_settings import read_host_settings
from shared.runtime import get_runtime
from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.azurite import Azurite
from tests.support.flow import (
    discovered_on_a_short_deadline,
    events,
    finished,
    post_run,
    start_and_discover,
    status,
)
from tests.support.host import FunctionsHost

ROUTE_NOT_FOUND = {"error": {"code": "404", "message": "Resource not found"}}


def test_host_settings_are_read_as_the_host_reads_them() -> None:
    host_json = {"functionTimeout": "00:10:00", "extensions": {"queues": {"maxDequeueCount": 5}}}
    assert read_host_settings(host_json, {}).max_dequeue_count == 5
    assert read_host_settings(host_json, {}).function_timeout_seconds == 600
    overridden = read_host_settings(
        host_json,
        {"AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "2",
         "azurefunctionsjobhost__FUNCTIONTIMEOUT": "01:00:00"},
    )
    assert overridden.max_dequeue_count == 2
    assert overridden.function_timeout_seconds == 3600
    assert read_host_settings({"functionTimeout": "-1"}, {}).function_timeout_seconds is None
    assert read_host_settings({}, {}).max_dequeue_count == 5  # the host's default


def test_the_runtime_takes_the_hosts_overrides(app_env: AppEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AzureFunctionsJobHost__extensions__queues__maxDequeueCount", "2")
    assert get_runtime().max_dequeue_count == 2


def test_a_slow_body_cannot_outlive_the_deliverys_share_of_function_timeout(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # functionTimeout 4 s: a delivery may take 2 s. Each read stays inside the read timeout (10 s),
    # but the body as a whole would take 3.5 s.
    file = FakeFile(os.urandom(100_000), "/mnt/data/slow.bin", cite="real")
    answer = discovered_on_a_short_deadline(host, fake, monkeypatch, file)
    fake.stall_next_download(after_bytes=1000, seconds=3.5)
    (delivery,) = host.deliver("persist_artifact", max_rounds=1)
    assert delivery.error is not None  # ended by the delivery's deadline, to be delivered again
    assert status(host, answer["response_id"])["artifacts"][0]["state"] == "pending"
    # The next delivery, at normal speed, stores the file whole.
    assert all(d.error is None for d in host.deliver("persist_artifact", until_empty=True))
    assert status(host, answer["response_id"])["artifacts"][0]["state"] == "persisted"


def test_a_route_that_answers_404_is_never_read_as_file_gone(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTIFACTS_DOWNLOAD_ATTEMPTS", "1")
    file = FakeFile(b"kept", "/mnt/data/kept.txt", cite="real")
    answer = start_and_discover(host, fake, Scenario([FakeContainer([file])]))
    fake.fail_next("/content", 404, ROUTE_NOT_FOUND, times=100)  # a wrong endpoint, every time
    deliveries = host.deliver("persist_artifact", until_empty=True)
    assert [d.dequeue_count for d in deliveries] == [1, 2, 3, 4, 5]  # kept and retried, not dropped
    host.deliver("record_failed_artifact")
    artifact = status(host, answer["response_id"])["artifacts"][0]
    assert artifact["code"] == "retries_exhausted"  # never "file_gone"
    assert "404" in artifact["reason"]
    # Once the endpoint is fixed, importing the run again stores the file.
    fake.clear_faults()
    host.http("POST", f"responses/{answer['response_id']}/import")
    assert finished(host, answer["response_id"])["counts"]["persisted"] == 1


def test_importing_through_a_route_that_answers_404_is_a_configuration_error(
    host: FunctionsHost, fake: FakeAzureOpenAI
) -> None:
    fake.fail_next("/openai/v1/responses/", 404, ROUTE_NOT_FOUND, times=10)
    call = host.http("POST", "responses/resp_somewhere/import")
    assert call.response.status_code == 502
    assert call.json()["error"]["code"] == "upstream_route_not_found"


def test_a_run_with_too_many_files_is_capped_with_a_warning(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTIFACTS_MAX_FILES_PER_RUN", "3")
    made = [FakeFile(f"file {i}".encode(), f"/mnt/data/{i}.txt", cite=None) for i in range(5)]
    response_id = post_run(host, fake, Scenario([FakeContainer(made)])).json()["response_id"]
    final = finished(host, response_id)
    assert len(final["artifacts"]) == 3
    assert final["counts"]["persisted"] == 3
    assert final["complete"] is False
    assert any("ARTIFACTS_MAX_FILES_PER_RUN" in w["problem"] for w in final["warnings"])
    (event,) = events(host, app_env)
    assert event["warnings"] == final["warnings"]
    assert len(event["artifacts"]) == 3


def test_the_wait_never_outlasts_the_http_budget(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(start, "HTTP_BUDGET_SECONDS", 7.0)  # the front end's 230 s, scaled down
    call = post_run(host, fake, Scenario([FakeContainer([])], polls_before_done=10**6), wait=200)
    answer = call.json()
    assert answer["status"] in ("queued", "in_progress")  # answered in the budget, run still going
    assert "artifacts" not in answer
    assert status(host, answer["response_id"])["phase"] == "running"  # and it is being followed


def test_the_run_record_failing_on_post_still_names_the_run(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTIFACTS_STORAGE_CONNECTION", azurite.refused_connection_string())
    file = FakeFile(b"safe", "/mnt/data/safe.txt", cite="real")
    call = post_run(host, fake, Scenario([FakeContainer([file])]), expect=503)
    error = call.json()["error"]
    assert error["code"] == "not_queued"
    response_id = error["response_id"]
    monkeypatch.delenv("ARTIFACTS_STORAGE_CONNECTION")
    assert host.http("POST", f"responses/{response_id}/import").response.status_code == 202
    assert finished(host, response_id)["counts"]["persisted"] == 1


def test_a_storage_outage_during_a_status_read_is_a_json_503(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    response_id = post_run(host, fake, Scenario([FakeContainer([])])).json()["response_id"]
    monkeypatch.setenv("ARTIFACTS_STORAGE_CONNECTION", azurite.refused_connection_string())
    call = host.http("GET", f"responses/{response_id}")
    assert call.response.status_code == 503
    assert call.response.mimetype == "application/json"
    assert call.json()["error"]["code"] == "storage_unavailable"
    assert "AccountKey" not in call.response.get_body().decode()


def test_unknown_route_id_shapes_are_refused_before_any_call(host: FunctionsHost, fake: FakeAzureOpenAI) -> None:
    before = len(fake.requests)
    for route in (f"responses/{'x' * 200}/import", "responses/a.b/cancel"):
        call = host.http("POST", route)
        assert call.response.status_code == 400
        assert call.json()["error"]["field"] == "response_id"
    assert len(fake.requests) == before
