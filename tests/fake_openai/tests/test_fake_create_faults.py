"""The fake's lost create answers and its ``metadata``, checked over real HTTP and against the
openai SDK's own types: a run that is made while its caller hears nothing, and the metadata the
Responses API stores with a response and answers on every retrieval."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response

from tests.fake_openai import CreateFault, FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.fake_openai.tests.conftest import API_KEY
from tests.support.flow import create_body


def payload(prompt: str = "make files", **extra: Any) -> dict[str, Any]:
    return create_body(prompt, store=True, **extra)


def test_metadata_is_stored_and_answered_by_every_retrieval(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    tags = {"order": "42", "team": "finance"}
    made = http.post("/openai/v1/responses", json=payload(metadata=tags)).json()
    fetched = http.get(f"/openai/v1/responses/{made['id']}").json()
    client = openai.OpenAI(api_key=API_KEY, base_url=f"{server.endpoint}/openai/v1/",
                           default_headers={"api-key": API_KEY}, max_retries=0)
    with client:
        through_sdk = client.responses.retrieve(made["id"])
    assert Response.model_validate(made).metadata == tags
    assert Response.model_validate(fetched).metadata == tags
    assert through_sdk.metadata == tags
    assert Response.model_validate(http.post("/openai/v1/responses", json=payload()).json()).metadata == {}


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ({f"k{n}": "v" for n in range(17)}, "metadata"),
        ({"k" * 65: "v"}, "metadata"),
        ({"long": "v" * 513}, "metadata.long"),
        ({"number": 1}, "metadata.number"),
        (["not", "an", "object"], "metadata"),
    ],
)
def test_metadata_beyond_the_limits_is_refused(
    server: FakeAzureOpenAI, http: httpx.Client, metadata: Any, param: str
) -> None:
    answer = http.post("/openai/v1/responses", json=payload(metadata=metadata))
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param
    assert server.created_count() == 0


def test_metadata_at_the_limits_is_accepted(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    tags = {f"{n:02d}" + "k" * 62: "v" * 512 for n in range(16)}
    answer = http.post("/openai/v1/responses", json=payload(metadata=tags))
    assert answer.status_code == 200, answer.text
    assert answer.json()["metadata"] == tags


def test_a_lost_create_answer_still_makes_the_run(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    server.register("lost", Scenario([FakeContainer([FakeFile(b"x", "/mnt/data/x.txt")])]))
    fault = server.lose_next_create_answer()
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/openai/v1/responses", json=payload("lost", metadata={"tag": "t1"}))
    response_id = fault.wait_made()
    assert server.created_count() == 1
    made = http.get(f"/openai/v1/responses/{response_id}").json()
    assert Response.model_validate(made).metadata == {"tag": "t1"}
    # Only the next create is lost.
    assert http.post("/openai/v1/responses", json=payload()).status_code == 200


def test_a_held_create_answer_outlasts_the_clients_timeout(server: FakeAzureOpenAI) -> None:
    fault = server.hold_next_create_answer()
    with (
        httpx.Client(base_url=server.endpoint, headers={"api-key": API_KEY}, timeout=0.5) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.post("/openai/v1/responses", json=payload())
    response_id = fault.wait_made()
    fault.release()  # the late answer goes to a connection the client closed
    assert server.response(response_id) is not None
    assert server.created_count() == 1


def test_a_held_create_answer_is_sent_when_released(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    fault = server.hold_next_create_answer()
    answers: list[httpx.Response] = []
    caller = threading.Thread(target=lambda: answers.append(http.post("/openai/v1/responses", json=payload())))
    caller.start()
    response_id = fault.wait_made()
    assert answers == []  # made, and still unanswered
    fault.release()
    caller.join(timeout=10)
    (answer,) = answers
    assert Response.model_validate(answer.json()).id == response_id


def post_held(
    server: FakeAzureOpenAI, http: httpx.Client
) -> tuple[CreateFault, threading.Thread, list[BaseException]]:
    """A create posted on a thread of its own, its run made and its answer held: the fault, the
    thread, and the HTTP errors it meets (once it has ended)."""
    fault = server.hold_next_create_answer()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            http.post("/openai/v1/responses", json=payload())
        except httpx.HTTPError as error:
            errors.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    fault.wait_made()
    return fault, caller, errors


def test_a_held_create_answer_can_be_dropped(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    fault, caller, errors = post_held(server, http)
    fault.drop()
    caller.join(timeout=10)
    assert [type(e) for e in errors] == [httpx.RemoteProtocolError]


def test_clear_faults_drops_a_held_answer_nobody_released(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    _, caller, errors = post_held(server, http)
    server.clear_faults()
    caller.join(timeout=10)
    assert [type(e) for e in errors] == [httpx.RemoteProtocolError]
    assert http.post("/openai/v1/responses", json=payload()).status_code == 200  # no fault left
