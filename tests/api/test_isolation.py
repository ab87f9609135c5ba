"""Download links and caller isolation.

Links are checked by downloading through them from Azurite over real HTTP. Owners come from the
headers App Service Authentication sets; they count only when the platform says it is on.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.flow import events, finished
from tests.support.host import FunctionsHost, HttpCall
from tests.support.principals import easy_auth

ALICE = easy_auth("0f0e-alice")
BOB = easy_auth("7a7b-bob")


def post(host: FunctionsHost, fake: FakeAzureOpenAI, who: dict[str, str], **body: Any) -> HttpCall:
    prompt = f"chart {uuid.uuid4().hex}"
    fake.register(prompt, Scenario([FakeContainer([FakeFile(os.urandom(500), "/mnt/data/chart.png", cite="real")])]))
    headers = {"content-type": "application/json", **who}
    return host.http("POST", "responses", body=json.dumps({"input": prompt, **body}).encode(), headers=headers)


def as_caller(host: FunctionsHost, method: str, route: str, who: dict[str, str]) -> HttpCall:
    return host.http(method, route, headers=who)


def test_persisted_artifacts_carry_links_that_download_the_file(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    made = FakeFile(os.urandom(3000), "/mnt/data/sales report.csv", cite="real")
    prompt = f"report {uuid.uuid4().hex}"
    fake.register(prompt, Scenario([FakeContainer([made])]))
    response_id = host.http("POST", "responses", body=json.dumps({"input": prompt}).encode()).json()["response_id"]
    final = finished(host, response_id)
    (artifact,) = final["artifacts"]
    (event,) = events(host, app_env)
    for listed in (artifact, event["artifacts"][0]):
        assert listed["url_expires_at"].endswith("Z")
        download = httpx.get(listed["url"])
        assert download.status_code == 200
        assert download.content == made.content
        assert download.headers["content-disposition"].startswith("attachment;")
        assert "sales report.csv" in download.headers["content-disposition"]
        assert "sp=r&" in listed["url"]  # read only


def test_two_owners_each_see_only_their_own_runs(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    started = post(host, fake, ALICE)
    assert started.response.status_code == 202
    run = started.json()["response_id"]
    finished(host, run, headers=ALICE)
    unknown = f"resp_{uuid.uuid4().hex}"

    def same_as_unknown(call: HttpCall, unknown_call: HttpCall) -> None:
        assert call.response.status_code == unknown_call.response.status_code == 404
        assert call.json()["error"]["code"] == unknown_call.json()["error"]["code"]
        assert call.json()["error"]["message"].replace(run, "ID") == unknown_call.json()["error"]["message"].replace(
            unknown, "ID"
        )

    # Alice sees her run; Bob gets exactly what an unknown run gets, on every endpoint.
    assert as_caller(host, "GET", f"responses/{run}", ALICE).response.status_code == 200
    same_as_unknown(as_caller(host, "GET", f"responses/{run}", BOB),
                    as_caller(host, "GET", f"responses/{unknown}", BOB))
    same_as_unknown(as_caller(host, "POST", f"responses/{run}/cancel", BOB),
                    as_caller(host, "POST", f"responses/{unknown}/cancel", BOB))
    # Import asks Azure OpenAI in both cases (one GET each): the refusal's timing tells nothing either.
    def gets(response_id: str) -> int:
        return sum(1 for r in fake.requests if r.method == "GET" and r.path.endswith(response_id))

    before = gets(run), gets(unknown)
    same_as_unknown(as_caller(host, "POST", f"responses/{run}/import", BOB),
                    as_caller(host, "POST", f"responses/{unknown}/import", BOB))
    assert (gets(run), gets(unknown)) == (before[0] + 1, before[1] + 1)

    # Continuing Alice's run would read her conversation: refused before any call goes out.
    created = fake.created_count()
    refused = post(host, fake, BOB, previous_response_id=run)
    assert refused.response.status_code == 404
    assert refused.json()["error"]["code"] == "not_found"
    assert fake.created_count() == created
    assert post(host, fake, ALICE, previous_response_id=run).response.status_code == 202

    # The event names the owner, so a consumer can route it.
    assert [e["owner"] for e in events(host, app_env)] == ["aad:0f0e-alice"]


def test_idempotency_keys_are_per_caller(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    prompt = f"same body {uuid.uuid4().hex}"
    fake.register(prompt, Scenario([FakeContainer([FakeFile(b"x" * 10, "/mnt/data/a.txt", cite="real")])]))
    body = json.dumps({"input": prompt}).encode()
    key = {"Idempotency-Key": "order-42", "content-type": "application/json"}
    alice = host.http("POST", "responses", body=body, headers={**key, **ALICE}).json()["response_id"]
    bob = host.http("POST", "responses", body=body, headers={**key, **BOB}).json()["response_id"]
    again = host.http("POST", "responses", body=body, headers={**key, **ALICE})
    assert alice != bob
    assert again.json()["response_id"] == alice and again.response.headers["Idempotent-Replayed"] == "true"


def test_principal_headers_are_not_trusted_without_easy_auth(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    # Without Easy Auth anyone can write these headers: every key holder is one caller.
    run = post(host, fake, ALICE).json()["response_id"]
    seen = as_caller(host, "GET", f"responses/{run}", BOB)
    assert seen.response.status_code == 200
    assert as_caller(host, "GET", f"responses/{run}", {}).response.status_code == 200
    finished(host, run)
    assert [e["owner"] for e in events(host, app_env)] == [None]
