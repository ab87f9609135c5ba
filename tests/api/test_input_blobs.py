"""``input_blobs``: blobs in the input container streamed into Azure OpenAI's files API (the fake,
over HTTP; the blobs in Azurite), mounted for the code interpreter, shown as the run's inputs,
never persisted back, deleted once the run ends however it ends; each bad input gets its 4xx."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from azure.storage.blob import ContainerClient, ContentSettings

from shared.limits import INPUT_CHUNK_BYTES, MAX_INPUT_BLOBS
from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.flow import finished, landed, post_run, status
from tests.support.host import FunctionsHost
from tests.support.principals import easy_auth

CSV = b"region,sales\nnorth,3\nsouth,5\n"


@dataclass
class Inputs:
    container: ContainerClient

    def put(self, name: str, data: bytes, content_type: str = "text/csv") -> None:
        self.container.upload_blob(name, data, overwrite=True, content_settings=ContentSettings(content_type))


@pytest.fixture
def inputs(app_env: AppEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[Inputs]:
    name = f"inputs-{uuid.uuid4().hex[:12]}"
    container = app_env.blobs.get_container_client(name)
    container.create_container()
    monkeypatch.setenv("ARTIFACTS_INPUT_CONTAINER", name)
    for setting in ("ARTIFACTS_INPUT_MAX_BYTES", "ARTIFACTS_INPUT_MAX_TOTAL_BYTES"):
        monkeypatch.delenv(setting, raising=False)
    yield Inputs(container)
    container.delete_container()


def _creates(fake: FakeAzureOpenAI, since: int) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in fake.requests[since:]
            if r.method == "POST" and r.path == "/openai/v1/responses"]


def _chart() -> Scenario:
    return Scenario([FakeContainer([FakeFile(b"\x89PNG chart", "/mnt/data/chart.png")])])


def test_input_blobs_are_streamed_in_mounted_shown_never_persisted_and_deleted(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, inputs: Inputs
) -> None:
    large = os.urandom(3 * INPUT_CHUNK_BYTES + 12345)  # several Storage pieces, many HTTP chunks
    inputs.put("q3/sales.csv", CSV)
    inputs.put("q3/big.bin", large, "application/octet-stream")
    before = len(fake.requests)
    call = post_run(host, fake, _chart(), input_blobs=["q3/sales.csv", "q3/big.bin"])
    response_id = call.json()["response_id"]

    uploads = [r for r in fake.requests[before:] if r.method == "POST" and r.path == "/openai/v1/files"]
    assert len(uploads) == 2
    received = {u.filename: u for u in fake.uploads.values() if u.file_id in {
        e["file_id"] for e in status(host, response_id)["inputs"]}}
    assert received["sales.csv"].content == CSV  # byte for byte
    assert received["big.bin"].content == large
    assert (received["sales.csv"].purpose, received["sales.csv"].content_type) == ("assistants", "text/csv")
    # Streamed: a chunked body without a Content-Length, in many pieces, never one whole buffer.
    big = next(r for r in uploads if b'filename="big.bin"' in r.body)
    assert "content-length" not in big.headers
    assert big.headers["transfer-encoding"] == "chunked"
    assert big.chunks > len(large) // INPUT_CHUNK_BYTES

    (create,) = _creates(fake, before)
    ids = [received["sales.csv"].file_id, received["big.bin"].file_id]
    assert create["tools"][0]["container"]["file_ids"] == ids

    shown = status(host, response_id)["inputs"]
    assert shown == [
        {"name": "q3/sales.csv", "file_id": ids[0], "bytes": len(CSV), "deleted": False},
        {"name": "q3/big.bin", "file_id": ids[1], "bytes": len(large), "deleted": False},
    ]
    final = finished(host, response_id)
    assert [a["filename"] for a in final["artifacts"]] == ["chart.png"]  # the inputs, listed as user files, are not
    assert sorted(landed(app_env, response_id).values()) == [b"\x89PNG chart"]
    assert [entry["deleted"] for entry in final["inputs"]] == [True, True]
    assert all(fake.uploads[file_id].deleted for file_id in ids)
    assert not any(w.get("code") == "inputs_not_deleted" for w in final["warnings"])


@pytest.mark.parametrize("ending", ["failed", "cancelled"])
def test_inputs_are_deleted_when_the_run_fails_or_is_cancelled(
    host: FunctionsHost, fake: FakeAzureOpenAI, inputs: Inputs, ending: str
) -> None:
    inputs.put("data.csv", CSV)
    scenario = Scenario([], status="failed") if ending == "failed" else Scenario([], polls_before_done=10_000)
    response_id = post_run(host, fake, scenario, input_blobs=["data.csv"]).json()["response_id"]
    (entry,) = status(host, response_id)["inputs"]
    assert fake.uploads[entry["file_id"]].deleted is False  # the run may still read it
    if ending == "cancelled":
        assert host.http("POST", f"responses/{response_id}/cancel").response.status_code in (200, 202)
    final = finished(host, response_id)
    assert final["status"] == ending
    assert final["inputs"][0]["deleted"] is True
    assert fake.uploads[entry["file_id"]].deleted is True


def test_a_failed_delete_is_tried_again_and_never_holds_the_event(
    host: FunctionsHost, fake: FakeAzureOpenAI, inputs: Inputs
) -> None:
    inputs.put("data.csv", CSV)
    response_id = post_run(host, fake, _chart(), input_blobs=["data.csv"]).json()["response_id"]
    (entry,) = status(host, response_id)["inputs"]
    fake.fail_next(f"/openai/v1/files/{entry['file_id']}", 500, times=1000)
    final = finished(host, response_id)  # the event goes out all the same
    assert final["inputs"][0]["deleted"] is False
    assert any(w.get("code") == "inputs_not_deleted" for w in final["warnings"])
    deletes = [r for r in fake.requests if r.method == "DELETE" and r.path.endswith(entry["file_id"])]
    assert len(deletes) >= 2  # tried at every step after the run ended


BAD_INPUTS: list[tuple[str, Any, str, int, str]] = [
    ("missing blob", ["data.csv", "nope.csv"], "input_blobs[1]", 400, "no such blob in the input container"),
    ("too many", [f"f{i}.csv" for i in range(MAX_INPUT_BLOBS + 1)], "input_blobs", 400, f"at most {MAX_INPUT_BLOBS}"),
    ("dot-dot", ["../other/data.csv"], "input_blobs[0]", 400, ".."),
    ("leading slash", ["/data.csv"], "input_blobs[0]", 400, "leading '/'"),
    ("a URL", ["https://evil.example/x?sig=1"], "input_blobs[0]", 400, "not a URL"),
    ("too long", ["a" * 600], "input_blobs[0]", 400, "at most 512"),
    ("not a list", "data.csv", "input_blobs", 400, "list"),
    ("twice", ["data.csv", "data.csv"], "input_blobs[1]", 400, "same blob"),
    ("too large", ["big.csv"], "input_blobs[0]", 413, "larger than 100 bytes"),
    ("together too large", ["data.csv", "mid.csv"], "input_blobs", 413, "together larger than 120 bytes"),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_each_bad_input_gets_its_4xx_and_nothing_is_uploaded(
    host: FunctionsHost, fake: FakeAzureOpenAI, inputs: Inputs, monkeypatch: pytest.MonkeyPatch,
    case: tuple[str, Any, str, int, str],
) -> None:
    _, names, field, code, says = case
    monkeypatch.setenv("ARTIFACTS_INPUT_MAX_BYTES", "100")
    monkeypatch.setenv("ARTIFACTS_INPUT_MAX_TOTAL_BYTES", "120")
    inputs.put("data.csv", CSV)
    inputs.put("mid.csv", b"x" * 95)
    inputs.put("big.csv", b"x" * 101)
    before, uploads = len(fake.requests), len(fake.uploads)
    call = host.http("POST", "responses", body=json.dumps({"input": "chart", "input_blobs": names}).encode())
    assert call.response.status_code == code, call.response.get_body()
    error = call.json()["error"]
    assert error["field"] == field
    assert error["message"].startswith(f"{field}: ") and says in error["message"]
    assert len(fake.requests) == before and len(fake.uploads) == uploads  # nothing went out


def test_without_an_input_container_input_blobs_is_refused(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARTIFACTS_INPUT_CONTAINER", raising=False)
    before = len(fake.requests)
    call = host.http("POST", "responses", body=b'{"input": "x", "input_blobs": ["data.csv"]}')
    assert call.response.status_code == 400
    assert "ARTIFACTS_INPUT_CONTAINER" in call.json()["error"]["message"]
    assert len(fake.requests) == before


def test_under_easy_auth_a_caller_names_only_blobs_under_their_own_prefix(
    host: FunctionsHost, fake: FakeAzureOpenAI, inputs: Inputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")
    alice, bob = easy_auth("0f0e-alice"), easy_auth("7a7b-bob")
    inputs.put("aad:0f0e-alice/data.csv", b"alice's data")
    inputs.put("data.csv", b"nobody's")
    prompt = f"chart {uuid.uuid4().hex}"
    fake.register(prompt, _chart())
    body = json.dumps({"input": prompt, "input_blobs": ["data.csv"]}).encode()
    mine = host.http("POST", "responses", body=body, headers={"content-type": "application/json", **alice})
    assert mine.response.status_code == 202, mine.response.get_body()
    (entry,) = status(host, mine.json()["response_id"], alice)["inputs"]
    assert fake.uploads[entry["file_id"]].content == b"alice's data"  # her prefix, not the container's root
    for name in ("data.csv", "aad:0f0e-alice/data.csv", "../aad:0f0e-alice/data.csv"):
        other = host.http("POST", "responses", body=json.dumps({"input": prompt, "input_blobs": [name]}).encode(),
                          headers={"content-type": "application/json", **bob})
        assert other.response.status_code == 400, name
        assert other.json()["error"]["field"] == "input_blobs[0]"


def test_a_refused_create_deletes_the_uploads_at_once(
    host: FunctionsHost, fake: FakeAzureOpenAI, inputs: Inputs
) -> None:
    inputs.put("data.csv", CSV)
    before = set(fake.uploads)
    fake.fail_next("/openai/v1/responses", 400, {"error": {"code": "invalid_value", "message": "No.",
                                                           "type": "invalid_request_error", "param": "input"}})
    call = host.http("POST", "responses", body=b'{"input": "chart", "input_blobs": ["data.csv"]}')
    assert call.response.status_code == 400, call.response.get_body()
    (new,) = set(fake.uploads) - before
    assert fake.uploads[new].deleted is True  # no run will read it
