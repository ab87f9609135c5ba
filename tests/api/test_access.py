"""Who may call, and what they see, under Easy Auth: fail closed, one right at a time.

Each case here failed on the code before issue 21: a missing or malformed principal was "no
owner" (and saw every ownerless run), any identity in the tenant was a caller, import handed any
stored response to whoever asked first, and a damaged record answered 500 before the owner check.
"""

from __future__ import annotations

import base64
import json
import uuid

import azure.functions as func
import pytest

from shared.api.callers import Caller, caller_of
from shared.errors import Refusal
from shared.runtime import get_runtime
from shared.settings import load_settings
from shared.storage.run_records import RUN_RECORD
from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.flow import finished
from tests.support.host import FunctionsHost
from tests.support.principals import CALLER, IMPORTER, easy_auth
from tests.support.storage_faults import BlobFaults

CODE_INTERPRETER = {"type": "code_interpreter", "container": {"type": "auto"}}
ALICE = easy_auth("0f0e-alice")
ALICE_IMPORTING = easy_auth("0f0e-alice", CALLER, IMPORTER)
BOB = easy_auth("7a7b-bob")
ENVIRONMENT = {"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com", "AZURE_OPENAI_DEPLOYMENT": "d",
               "AzureWebJobsStorage": "UseDevelopmentStorage=true", "WEBSITE_AUTH_ENABLED": "True"}


def _encoded(principal: object) -> str:
    return base64.b64encode(json.dumps(principal).encode()).decode()


# Each: what Easy Auth would never send, yet a request may carry it if something is misconfigured.
UNUSABLE_PRINCIPALS = {
    "no headers at all": {},
    "no claims header": {k: v for k, v in ALICE.items() if k != "X-MS-CLIENT-PRINCIPAL"},
    "no principal id": {k: v for k, v in ALICE.items() if k != "X-MS-CLIENT-PRINCIPAL-ID"},
    "no identity provider": {k: v for k, v in ALICE.items() if k != "X-MS-CLIENT-PRINCIPAL-IDP"},
    "an empty principal id": {**ALICE, "X-MS-CLIENT-PRINCIPAL-ID": "  "},
    "a non-printable principal id": {**ALICE, "X-MS-CLIENT-PRINCIPAL-ID": "alice\x07"},
    "an over-long principal id": {**ALICE, "X-MS-CLIENT-PRINCIPAL-ID": "a" * 129},
    "claims that are not base64": {**ALICE, "X-MS-CLIENT-PRINCIPAL": "not base64!"},
    "claims that are not JSON": {**ALICE, "X-MS-CLIENT-PRINCIPAL": base64.b64encode(b"{roles").decode()},
    "claims nested without end": {**ALICE, "X-MS-CLIENT-PRINCIPAL": base64.b64encode(b"[" * 5000).decode()},
    "claims without a claims list": {**ALICE, "X-MS-CLIENT-PRINCIPAL": _encoded({"auth_typ": "aad"})},
}


def request(headers: dict[str, str]) -> func.HttpRequest:
    return func.HttpRequest("GET", "http://localhost/api/responses/resp_1", headers=headers, body=b"")


@pytest.mark.parametrize("case", sorted(UNUSABLE_PRINCIPALS))
def test_an_unusable_principal_is_401(case: str) -> None:
    with pytest.raises(Refusal) as refused:
        caller_of(request(UNUSABLE_PRINCIPALS[case]), load_settings(ENVIRONMENT))
    assert (refused.value.status, refused.value.code) == (401, "unauthenticated")


def test_a_principal_without_the_caller_role_is_403_naming_the_role() -> None:
    for roles in ((), ("Artifacts.Other",), (IMPORTER,)):
        with pytest.raises(Refusal) as refused:
            caller_of(request(easy_auth("0f0e-alice", *roles) if roles else {
                **ALICE, "X-MS-CLIENT-PRINCIPAL": _encoded({"claims": []})}), load_settings(ENVIRONMENT))
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
        assert CALLER in refused.value.message


def test_the_roles_come_from_the_claims_and_the_settings_name_them() -> None:
    settings = load_settings(ENVIRONMENT)
    assert caller_of(request(ALICE), settings) == Caller("aad:0f0e-alice", may_import_any=False)
    assert caller_of(request(ALICE_IMPORTING), settings) == Caller("aad:0f0e-alice", may_import_any=True)
    renamed = load_settings({**ENVIRONMENT, "ARTIFACTS_CALLER_ROLE": "Reports.Read",
                             "ARTIFACTS_IMPORT_ROLE": "Reports.Import"})
    with pytest.raises(Refusal):
        caller_of(request(ALICE_IMPORTING), renamed)
    assert caller_of(request(easy_auth("a", "Reports.Read", "Reports.Import")), renamed).may_import_any
    # Without Easy Auth the headers are anyone's: ignored, and the function key is the only right.
    without = load_settings({k: v for k, v in ENVIRONMENT.items() if k != "WEBSITE_AUTH_ENABLED"})
    assert caller_of(request({}), without) == Caller(None, may_import_any=True)
    assert caller_of(request(BOB), without) == Caller(None, may_import_any=True)


# -- over HTTP, through the host ----------------------------------------------------------------


def made_elsewhere(fake: FakeAzureOpenAI) -> str:
    prompt = f"elsewhere {uuid.uuid4().hex}"
    made = FakeFile(uuid.uuid4().bytes * 20, "/mnt/data/t.csv", cite="real")
    fake.register(prompt, Scenario([FakeContainer([made])]))
    response_id: str = fake.create({"model": "m", "input": prompt, "tools": [CODE_INTERPRETER],
                                    "include": ["code_interpreter_call.outputs"]})["id"]
    return response_id


def alices_run(host: FunctionsHost, fake: FakeAzureOpenAI) -> str:
    prompt = f"mine {uuid.uuid4().hex}"
    fake.register(prompt, Scenario([FakeContainer([FakeFile(b"x" * 100, "/mnt/data/m.csv", cite="real")])]))
    call = host.http("POST", "responses", body=json.dumps({"input": prompt}).encode(),
                     headers={"content-type": "application/json", **ALICE})
    assert call.response.status_code == 202, call.response.get_body()
    response_id: str = call.json()["response_id"]
    finished(host, response_id, headers=ALICE)
    return response_id


ROUTES = (("GET", "responses/{id}"), ("POST", "responses/{id}/import"), ("POST", "responses/{id}/cancel"))


def test_without_a_usable_principal_every_route_is_401_before_anything_is_read(
    host: FunctionsHost, fake: FakeAzureOpenAI, easy_auth_on: None, app_blobs: BlobFaults
) -> None:
    run, unknown = alices_run(host, fake), f"resp_{uuid.uuid4().hex}"
    calls = len(fake.requests)
    app_blobs.seen.clear()
    for headers in (UNUSABLE_PRINCIPALS["no headers at all"], UNUSABLE_PRINCIPALS["an over-long principal id"],
                    easy_auth("0f0e-alice", "Artifacts.Other")):
        for method, route in ROUTES:
            answers = [host.http(method, route.format(id=rid), headers=headers) for rid in (run, unknown)]
            assert {a.response.status_code for a in answers} <= {401, 403}
            assert answers[0].json() == answers[1].json(), "the answer must not tell a run from no run"
        post = host.http("POST", "responses", body=json.dumps({"input": "x"}).encode(), headers=headers)
        assert post.response.status_code in (401, 403)
    assert len(fake.requests) == calls, "Azure OpenAI was called for a caller who is nobody"
    assert app_blobs.seen == [], "Storage was read for a caller who is nobody"


def test_import_of_a_response_the_app_never_recorded_needs_the_import_right(
    host: FunctionsHost, fake: FakeAzureOpenAI, easy_auth_on: None
) -> None:
    response_id = made_elsewhere(fake)
    refused = host.http("POST", f"responses/{response_id}/import", headers=ALICE)
    unknown = host.http("POST", f"responses/resp_{uuid.uuid4().hex}/import", headers=ALICE)
    assert refused.response.status_code == unknown.response.status_code == 404
    assert get_runtime().status_records.runs.read(response_id) is None
    imported = host.http("POST", f"responses/{response_id}/import", headers=ALICE_IMPORTING)
    assert imported.response.status_code == 202
    final = finished(host, response_id, headers=ALICE)  # now hers: she sees it without the right
    assert final["counts"]["persisted"] == 1
    stranger = host.http("GET", f"responses/{response_id}", headers=easy_auth("7a7b-bob", CALLER, IMPORTER))
    assert stranger.response.status_code == 404, "the import right shows ownerless runs, not other owners'"


def test_a_damaged_record_is_nobodys_until_an_importer_rebuilds_it(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, easy_auth_on: None
) -> None:
    run = alices_run(host, fake)
    app_env.status().get_blob_client(f"{run}/{RUN_RECORD}").upload_blob(b"{not json", overwrite=True)
    unknown = f"resp_{uuid.uuid4().hex}"
    for who in (ALICE, BOB):
        damaged, missing = (host.http("GET", f"responses/{rid}", headers=who) for rid in (run, unknown))
        assert damaged.response.status_code == missing.response.status_code == 404
        assert damaged.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
        assert host.http("POST", f"responses/{run}/cancel", headers=who).response.status_code == 404
        assert host.http("POST", f"responses/{run}/import", headers=who).response.status_code == 404
    rebuilt = host.http("POST", f"responses/{run}/import", headers=ALICE_IMPORTING)
    assert rebuilt.response.status_code == 202
    assert finished(host, run, headers=ALICE)["counts"]["persisted"] == 1


def test_a_required_easy_auth_that_is_off_refuses_every_caller() -> None:
    """infra/ writes ARTIFACTS_REQUIRE_EASY_AUTH with Easy Auth: switched off, it is an outage, not an open door."""
    environment = {k: v for k, v in ENVIRONMENT.items() if k != "WEBSITE_AUTH_ENABLED"}
    settings = load_settings({**environment, "ARTIFACTS_REQUIRE_EASY_AUTH": "true"})
    for headers in ({}, ALICE_IMPORTING):
        with pytest.raises(Refusal) as refused:
            caller_of(request(headers), settings)
        assert (refused.value.status, refused.value.code) == (503, "easy_auth_off")
        assert "ARTIFACTS_REQUIRE_EASY_AUTH" in refused.value.message


def test_an_item_reference_needs_the_import_right(
    host: FunctionsHost, fake: FakeAzureOpenAI, easy_auth_on: None
) -> None:
    """An item_reference pulls an item of any stored response into the run by id: another's conversation."""
    body = json.dumps({"input": [{"type": "message", "role": "user", "content": "go on"},
                                 {"type": "item_reference", "id": "msg_0123456789abcdef"}]}).encode()
    created = fake.created_count()
    refused = host.http("POST", "responses", body=body, headers={"content-type": "application/json", **ALICE})
    assert refused.response.status_code == 403
    assert refused.json()["error"]["field"] == "input[1].type"
    assert "ARTIFACTS_IMPORT_ROLE" in refused.json()["error"]["message"]
    assert fake.created_count() == created


def test_storage_failing_on_the_owner_check_is_a_503_whatever_the_run(
    host: FunctionsHost, fake: FakeAzureOpenAI, easy_auth_on: None, app_blobs: BlobFaults
) -> None:
    run, unknown, elsewhere = alices_run(host, fake), f"resp_{uuid.uuid4().hex}", made_elsewhere(fake)
    for method, route in ROUTES:
        answers = []
        # Import asks Azure OpenAI first: an id it does not know ends there, so compare with one it knows.
        for rid in (run, elsewhere if route.endswith("/import") else unknown):
            app_blobs.refuse_next("GET", f"{rid}/{RUN_RECORD}")
            answers.append(host.http(method, route.format(id=rid), headers=ALICE_IMPORTING))
        assert [a.response.status_code for a in answers] == [503, 503], route
        assert answers[0].json() == answers[1].json()
