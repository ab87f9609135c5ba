"""The fake Azure OpenAI speaks the real wire format (checked with the openai SDK's own types)
and enforces the real endpoint's rules."""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types import FileDeleted, FileObject
from openai.types.containers import FileListResponse, FileRetrieveResponse
from openai.types.responses import Response, ResponseCodeInterpreterToolCall, ResponseOutputMessage, ResponseOutputText
from openai.types.responses.response_code_interpreter_tool_call import OutputLogs
from openai.types.responses.response_output_text import AnnotationContainerFileCitation

from tests.fake_openai import FakeApiError, FakeAzureOpenAI, FakeContainer, FakeFile, Scenario, png_bytes
from tests.fake_openai import server as fake_module

API_KEY = "wire-test-key"
TOKEN = "wire-test-token"
PREVIEW = {"api-version": "preview"}


@pytest.fixture
def server() -> Iterator[FakeAzureOpenAI]:
    with FakeAzureOpenAI(api_key=API_KEY, bearer_tokens=[TOKEN], page_size=2) as fake:
        yield fake


@pytest.fixture
def http(server: FakeAzureOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.endpoint, headers={"api-key": API_KEY}) as client:
        yield client


def payload(prompt: Any = "make files", *, file_ids: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"type": "auto"}
    if file_ids is not None:
        container["file_ids"] = file_ids
    body: dict[str, Any] = {
        "model": "gpt-test",
        "input": prompt,
        "tools": [{"type": "code_interpreter", "container": container}],
        "include": ["code_interpreter_call.outputs"],
    }
    body.update(extra)
    return body


def create(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = http.post("/openai/v1/responses", json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def list_all(http: httpx.Client, container_id: str, **params: str) -> list[dict[str, Any]]:
    """Every item, following has_more/after; checks each page's shape on the way."""
    items: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(100):
        query = {**PREVIEW, **params, **({"after": after} if after else {})}
        answer = http.get(f"/openai/v1/containers/{container_id}/files", params=query)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert page["object"] == "list"
        for item in page["data"]:
            FileListResponse.model_validate(item)
        if page["data"]:
            assert page["first_id"] == page["data"][0]["id"]
            assert page["last_id"] == page["data"][-1]["id"]
        items += page["data"]
        if not page["has_more"]:
            return items
        after = page["last_id"]
    raise AssertionError("pagination never ended")


def retrieve(http: httpx.Client, response_id: str, **params: str) -> dict[str, Any]:
    """GET a response that must exist; checks it against the SDK's type."""
    answer = http.get(f"/openai/v1/responses/{response_id}", params=params)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    Response.model_validate(result)
    return result


def cancel(http: httpx.Client, response_id: str) -> httpx.Response:
    return http.post(f"/openai/v1/responses/{response_id}/cancel")


def not_found(response_id: str) -> dict[str, Any]:
    message = f"Response with id '{response_id}' not found."
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


def cited_file_ids(response: Response) -> list[str]:
    message = response.output[-1]
    assert isinstance(message, ResponseOutputMessage)
    content = message.content[0]
    assert isinstance(content, ResponseOutputText)
    return [a.file_id for a in content.annotations if isinstance(a, AnnotationContainerFileCitation)]


def without_run_ids(raw: dict[str, Any]) -> dict[str, Any]:
    """A response minus what differs between two runs of one scenario: ids and times."""
    kept = {k: v for k, v in raw.items() if k not in {"id", "created_at", "completed_at", "background"}}
    kept["output"] = [{k: v for k, v in item.items() if k != "id"} for item in raw["output"]]
    return kept


# -- POST /openai/v1/responses ---------------------------------------------------------------


def test_response_validates_as_the_sdk_response_type(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    chart = FakeFile(b"png", "/mnt/data/sales chart.png")
    table = FakeFile(b"a,b\n", "/mnt/data/table.csv", cite="placeholder")
    report = FakeFile(b"%PDF", "/mnt/data/report.pdf", cite="both")
    notes = FakeFile(b"notes", "/mnt/data/notes.md", cite=None)
    second = FakeFile(b"{}", "/mnt/data/data.json")
    scenario = Scenario(
        containers=[FakeContainer([chart, table, report, notes]), FakeContainer([second])],
        output_text="Done.",
    )
    server.register("chart please", scenario)
    body = payload("chart please", instructions="Be brief.", metadata={"run": "1"}, temperature=0.2)

    raw = create(http, body)
    response = Response.model_validate(raw)

    assert server.last_response_body == body
    assert "output_text" not in raw  # an SDK-side convenience, never on the wire
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == "gpt-test"
    assert response.instructions == "Be brief."
    assert response.metadata == {"run": "1"}
    assert response.temperature == 0.2
    assert response.tool_choice == "auto"
    assert [tool.type for tool in response.tools] == ["code_interpreter"]

    calls, message = response.output[:-1], response.output[-1]
    assert [type(call) for call in calls] == [ResponseCodeInterpreterToolCall] * 2
    assert [c.container_id for c in calls if isinstance(c, ResponseCodeInterpreterToolCall)] == [
        scenario.containers[0].container_id,
        scenario.containers[1].container_id,
    ]
    first_call = calls[0]
    assert isinstance(first_call, ResponseCodeInterpreterToolCall)
    assert first_call.id.startswith("ci_")
    assert first_call.status == "completed"
    assert first_call.outputs is not None
    assert isinstance(first_call.outputs[0], OutputLogs)

    assert isinstance(message, ResponseOutputMessage)
    assert message.id.startswith("msg_")
    text = message.content[0]
    assert isinstance(text, ResponseOutputText)
    assert text.text.startswith("Done.")
    assert response.output_text == text.text
    assert all(isinstance(a, AnnotationContainerFileCitation) for a in text.annotations)
    citations = [a for a in text.annotations if isinstance(a, AnnotationContainerFileCitation)]
    assert [(a.file_id, a.filename) for a in citations] == [
        (chart.file_id, "sales chart.png"),
        (table.file_id, f"{table.file_id}.csv"),
        (report.file_id, f"{report.file_id}.pdf"),  # "both": the placeholder first,
        (report.file_id, "report.pdf"),  # then the real name
        (second.file_id, "data.json"),
    ]
    assert citations[-1].container_id == scenario.containers[1].container_id
    for citation in citations:
        cited = text.text[citation.start_index : citation.end_index]
        file = next(f for f in (chart, table, report, second) if f.file_id == citation.file_id)
        assert cited == f"[{file.filename}](sandbox:{file.path})"


def test_registered_ids_are_filled_in_and_ids_have_the_real_prefixes(server: FakeAzureOpenAI) -> None:
    kept = FakeFile(b"x", "/mnt/data/x.txt", file_id="cfile_" + "a" * 32, created_at=1700000000)
    fresh = FakeFile(b"y", "/mnt/data/y.txt")
    container = FakeContainer([kept, fresh])
    server.register("ids", Scenario([container]))

    assert container.container_id.startswith("cntr_")
    assert len(container.container_id) == len("cntr_") + 32
    assert kept.file_id == "cfile_" + "a" * 32
    assert kept.created_at == 1700000000
    assert fresh.file_id.startswith("cfile_")
    assert len(fresh.file_id) == len("cfile_") + 32
    assert fresh.created_at == 0  # the run that makes it sets it


@pytest.mark.parametrize("change", [{"status": "done"}, {"status": "in_progress"}, {"polls_before_done": -1}])
def test_register_refuses_an_impossible_scenario(server: FakeAzureOpenAI, change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        server.register("bad", Scenario([], **change))


def test_prompt_matches_the_last_input_items_text(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    container = FakeContainer([FakeFile(b"1", "/mnt/data/one.txt")])
    server.register("the prompt", Scenario([container], output_text="Matched."))
    items = [
        {"role": "user", "content": "an earlier turn"},
        {"role": "user", "content": [{"type": "input_text", "text": "the prompt"}]},
    ]

    response = Response.model_validate(create(http, payload(items)))

    assert response.output_text.startswith("Matched.")
    assert response.output[0].type == "code_interpreter_call"
    assert response.output[0].container_id == container.container_id


def test_other_prompts_get_the_demo_scenario(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    server.register("registered", Scenario([FakeContainer([])], output_text="Registered."))

    response = Response.model_validate(create(http, payload("something else")))

    call = response.output[0]
    assert isinstance(call, ResponseCodeInterpreterToolCall)
    files = {item["path"]: item for item in list_all(http, call.container_id, order="asc")}
    assert set(files) == {
        "/mnt/data/sales chart.png",
        "/mnt/data/sales_by_region.csv",
        "/mnt/data/summary.md",
        "/mnt/data/input_sales.csv",
    }
    assert files["/mnt/data/input_sales.csv"]["source"] == "user"
    assert {files[p]["source"] for p in files if p != "/mnt/data/input_sales.csv"} == {"assistant"}

    message = response.output[-1]
    assert isinstance(message, ResponseOutputMessage)
    content = message.content[0]
    assert isinstance(content, ResponseOutputText)
    cited = {a.filename for a in content.annotations if isinstance(a, AnnotationContainerFileCitation)}
    assert cited == {"sales chart.png", "sales_by_region.csv"}  # summary.md is not cited

    chart_id = files["/mnt/data/sales chart.png"]["id"]
    png = http.get(f"/openai/v1/containers/{call.container_id}/files/{chart_id}/content", params=PREVIEW).content
    assert_valid_png(png)


def assert_valid_png(data: bytes) -> None:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, kinds, idat = 8, [], b""
    width = height = 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        chunk = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + chunk), kind
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
            assert chunk[8:10] == b"\x08\x02"  # 8-bit RGB
        if kind == b"IDAT":
            idat += chunk
        kinds.append(kind)
        offset += 12 + length
    assert kinds[0] == b"IHDR"
    assert kinds[-1] == b"IEND"
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width)


def test_request_file_ids_become_user_files_in_the_first_container(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    first = FakeContainer([FakeFile(b"out", "/mnt/data/out.txt")])
    second = FakeContainer([FakeFile(b"other", "/mnt/data/other.txt")])
    server.register("with inputs", Scenario([first, second]))

    create(http, payload("with inputs", file_ids=["assistant-in1", "assistant-in2"]))

    listed = list_all(http, first.container_id, order="asc")
    users = [item for item in listed if item["source"] == "user"]
    assert [u["path"] for u in users] == ["/mnt/data/assistant-in1.bin", "/mnt/data/assistant-in2.bin"]
    assert all(u["bytes"] == len(b"user input") and u["id"].startswith("cfile_") for u in users)
    assert [item["source"] for item in list_all(http, second.container_id)] == ["assistant"]


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"background": True, "store": False}, "store"),
        ({"background": "yes"}, "background"),
        ({"store": "no"}, "store"),
        ({"previous_response_id": "resp_unknown"}, "previous_response_id"),
        ({"previous_response_id": 7}, "previous_response_id"),
        ({"model": None}, "model"),
        ({"input": None}, "input"),
        ({"include": None}, "include"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"tools": [{"type": "code_interpreter", "container": "cntr_existing"}]}, "tools[].container"),
        ({"tools": [{"type": "code_interpreter", "container": {"type": "auto", "file_ids": "x"}}]}, None),
    ],
)
def test_responses_request_rules(
    server: FakeAzureOpenAI, http: httpx.Client, change: dict[str, Any], param: str | None
) -> None:
    body = payload()
    for key, value in change.items():
        if value is None:
            del body[key]
        else:
            body[key] = value

    answer = http.post("/openai/v1/responses", json=body)

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    assert set(error) == {"message", "type", "param", "code"}
    assert server.created_count() == 0


def test_responses_body_must_be_a_json_object(http: httpx.Client) -> None:
    assert http.post("/openai/v1/responses", content=b"not json").status_code == 400
    assert http.post("/openai/v1/responses", json=["a", "list"]).status_code == 400


@pytest.mark.parametrize(("version", "status"), [(None, 200), ("preview", 200), ("2025-04-01-preview", 400)])
def test_responses_api_version(http: httpx.Client, version: str | None, status: int) -> None:
    params = {"api-version": version} if version else {}

    answer = http.post("/openai/v1/responses", json=payload(), params=params)

    assert answer.status_code == status
    if status == 400:
        assert answer.json() == {"error": {"code": "BadRequest", "message": "API version not supported"}}


@pytest.mark.parametrize("status", ["incomplete", "failed", "cancelled"])
def test_other_statuses_still_validate(server: FakeAzureOpenAI, http: httpx.Client, status: str) -> None:
    file = FakeFile(b"1", "/mnt/data/1.txt")
    container = FakeContainer([file])
    server.register("p", Scenario([container], status=status))

    response = Response.model_validate(create(http, payload("p")))

    assert response.status == status
    assert response.completed_at is None
    assert (response.error is not None) == (status == "failed")
    assert (response.incomplete_details is not None) == (status == "incomplete")
    # A run that stopped after making files still names them, and they exist.
    assert [item.type for item in response.output] == ["code_interpreter_call", "message"]
    assert cited_file_ids(response) == [file.file_id]
    assert [item["id"] for item in list_all(http, container.container_id)] == [file.file_id]


def test_legacy_results_shape(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    chart = FakeFile(b"png", "/mnt/data/chart.png")
    table = FakeFile(b"a,b\n", "/mnt/data/table.csv", cite="both")
    upload = FakeFile(b"in", "/mnt/data/in.csv", source="user", cite=None)
    legacy = FakeContainer([chart, table, upload], legacy_results=True)
    server.register("legacy", Scenario([legacy]))

    raw = create(http, payload("legacy"))
    response = Response.model_validate(raw)

    call = raw["output"][0]
    assert call["type"] == "code_interpreter_call"
    assert call["results"] == [
        {
            "type": "files",
            "files": [
                {"file_id": chart.file_id, "mime_type": "image/png"},
                {"file_id": table.file_id, "mime_type": "text/csv"},
            ],
        }
    ]
    message = response.output[-1]
    assert isinstance(message, ResponseOutputMessage)
    content = message.content[0]
    assert isinstance(content, ResponseOutputText)
    assert content.annotations == []


# -- background runs, GET and cancel --------------------------------------------------------


def test_background_run_lifecycle(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    chart = FakeFile(png_bytes(), "/mnt/data/chart.png")
    table = FakeFile(b"a,b\n1,2\n", "/mnt/data/table.csv", cite="placeholder")
    container = FakeContainer([chart, table])
    server.register("slow", Scenario([container], output_text="Slow.", polls_before_done=3))

    created = Response.model_validate(create(http, payload("slow", background=True, store=True)))

    assert (created.status, created.background, created.output) == ("queued", True, [])
    assert (created.completed_at, created.usage, created.error) == (None, None, None)
    # The container and its files exist while the run is still going.
    assert [item["id"] for item in list_all(http, container.container_id, order="asc")] == [
        chart.file_id,
        table.file_id,
    ]
    content_url = f"/openai/v1/containers/{container.container_id}/files/{table.file_id}/content"
    assert http.get(content_url, params=PREVIEW).content == b"a,b\n1,2\n"

    running = [retrieve(http, created.id) for _ in range(3)]
    assert [r["status"] for r in running] == ["queued", "in_progress", "in_progress"]
    assert all(r["output"] == [] and r["usage"] is None and r["completed_at"] is None for r in running)

    raw = retrieve(http, created.id)
    final = Response.model_validate(raw)
    assert (final.id, final.created_at, final.status, final.background) == (
        created.id,
        created.created_at,
        "completed",
        True,
    )
    assert final.completed_at is not None
    assert final.completed_at >= final.created_at
    assert final.usage is not None
    call = final.output[0]
    assert isinstance(call, ResponseCodeInterpreterToolCall)
    assert call.container_id == container.container_id
    assert final.output_text.startswith("Slow.")
    assert cited_file_ids(final) == [chart.file_id, table.file_id]
    assert retrieve(http, created.id) == raw  # it stays final, with the same item ids
    assert server.polls(created.id) == 5


@pytest.mark.parametrize("status", ["completed", "incomplete", "failed", "cancelled"])
def test_background_final_object_is_the_synchronous_one(
    server: FakeAzureOpenAI, http: httpx.Client, status: str
) -> None:
    container = FakeContainer([FakeFile(b"1", "/mnt/data/1.txt"), FakeFile(b"2", "/mnt/data/2.md", cite=None)])
    scenario = Scenario([container], output_text="Both ways.", status=status, polls_before_done=1)
    server.register("twice", scenario)

    synchronous = create(http, payload("twice", store=True))
    queued = create(http, payload("twice", store=True, background=True))
    still_queued = retrieve(http, queued["id"])
    final = retrieve(http, queued["id"])

    assert synchronous["background"] is False
    assert synchronous["status"] == status  # polls_before_done does not apply
    assert Response.model_validate(queued).status == "queued"
    assert still_queued["status"] == "queued"
    assert final["background"] is True
    assert without_run_ids(final) == without_run_ids(synchronous)
    response = Response.model_validate(final)
    assert (response.error is not None) == (status == "failed")
    assert (response.incomplete_details is not None) == (status == "incomplete")
    assert (response.completed_at is not None) == (status == "completed")
    assert len(list_all(http, container.container_id)) == 2


def test_background_needs_store(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    answer = http.post("/openai/v1/responses", json=payload(background=True, store=False))

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "store")
    assert "store" in error["message"]
    assert server.created_count() == 0
    assert create(http, payload(background=True))["status"] == "queued"  # store defaults to true


def test_get_answers_a_stored_response(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    created = create(http, payload(store=True))

    assert retrieve(http, created["id"]) == created
    assert retrieve(http, created["id"], include="code_interpreter_call.outputs") == created  # ignored
    assert retrieve(http, created["id"], stream="false") == created


def test_get_of_an_unknown_response_is_404(http: httpx.Client) -> None:
    answer = http.get("/openai/v1/responses/resp_unknown")

    assert answer.status_code == 404
    assert answer.json() == not_found("resp_unknown")


def test_a_store_false_response_is_not_kept(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    created = Response.model_validate(create(http, payload(store=False)))

    assert created.status == "completed"
    assert server.created_count() == 1
    assert server.response(created.id) is None
    for answer in (http.get(f"/openai/v1/responses/{created.id}"), cancel(http, created.id)):
        assert answer.status_code == 404
        assert answer.json() == not_found(created.id)
    follow_up = http.post("/openai/v1/responses", json=payload(previous_response_id=created.id))
    assert follow_up.status_code == 400
    assert follow_up.json()["error"]["param"] == "previous_response_id"


@pytest.mark.parametrize(
    ("version", "status"), [(None, 200), ("preview", 200), ("v1", 200), ("2025-04-01-preview", 400)]
)
@pytest.mark.parametrize("route", ["retrieve", "cancel"])
def test_get_and_cancel_api_version(
    server: FakeAzureOpenAI, http: httpx.Client, route: str, version: str | None, status: int
) -> None:
    server.register("long", Scenario([], polls_before_done=10))
    running = server.create(payload("long", background=True))["id"]
    params = {"api-version": version} if version else {}
    url = f"/openai/v1/responses/{running}"

    answer = http.get(url, params=params) if route == "retrieve" else http.post(f"{url}/cancel", params=params)

    assert answer.status_code == status
    if status == 400:
        assert answer.json() == {"error": {"code": "BadRequest", "message": "API version not supported"}}
    else:
        Response.model_validate(answer.json())


def test_cancel_a_running_background_run(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    file = FakeFile(b"made before the stop", "/mnt/data/partial.csv")
    container = FakeContainer([file])
    server.register("stop me", Scenario([container], polls_before_done=5))
    created = create(http, payload("stop me", background=True))
    assert retrieve(http, created["id"])["status"] == "queued"
    assert retrieve(http, created["id"])["status"] == "in_progress"

    answer = cancel(http, created["id"])

    assert answer.status_code == 200
    cancelled = Response.model_validate(answer.json())
    assert (cancelled.id, cancelled.status, cancelled.background) == (created["id"], "cancelled", True)
    assert (cancelled.completed_at, cancelled.error, cancelled.incomplete_details) == (None, None, None)
    call = cancelled.output[0]
    assert isinstance(call, ResponseCodeInterpreterToolCall)
    assert call.container_id == container.container_id
    assert cited_file_ids(cancelled) == [file.file_id]
    assert retrieve(http, created["id"]) == answer.json()  # no more polls to go: it stays cancelled
    again = cancel(http, created["id"])
    assert again.status_code == 200
    assert again.json() == answer.json()
    assert [item["id"] for item in list_all(http, container.container_id)] == [file.file_id]


def test_cancel_a_run_that_ended_cancelled_answers_it_again(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    server.register("stopped", Scenario([FakeContainer([FakeFile(b"x", "/mnt/data/x")])], status="cancelled"))
    created = create(http, payload("stopped", background=True))
    ended = retrieve(http, created["id"])

    answer = cancel(http, created["id"])

    assert answer.status_code == 200
    assert answer.json() == ended
    assert Response.model_validate(ended).status == "cancelled"


@pytest.mark.parametrize("status", ["completed", "failed", "incomplete"])
def test_cancel_an_ended_background_run_is_refused(server: FakeAzureOpenAI, http: httpx.Client, status: str) -> None:
    server.register("ended", Scenario([FakeContainer([])], status=status, polls_before_done=1))
    created = create(http, payload("ended", background=True))
    server.finish(created["id"])

    answer = cancel(http, created["id"])

    assert answer.status_code == 400
    assert answer.json() == {
        "error": {
            "message": "Cannot cancel a completed response.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert retrieve(http, created["id"])["status"] == status


def test_cancel_a_synchronous_response_is_refused(http: httpx.Client) -> None:
    created = create(http, payload())

    answer = cancel(http, created["id"])

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", None)
    assert error["message"] == "Only responses created with background=true can be cancelled."
    assert retrieve(http, created["id"]) == created


def test_cancel_an_unknown_response_is_404(http: httpx.Client) -> None:
    answer = cancel(http, "resp_unknown")

    assert answer.status_code == 404
    assert answer.json() == not_found("resp_unknown")
    assert http.get("/openai/v1/responses/resp_unknown/cancel").status_code == 404  # wrong method


# -- previous_response_id reuses the container --------------------------------------------------


def test_a_follow_up_run_works_in_the_previous_container(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    earlier = FakeFile(b"old", "/mnt/data/old.csv", created_at=1_700_000_000)
    first_made = FakeFile(b"first", "/mnt/data/first.txt")
    first = FakeContainer([earlier, first_made])
    server.register("turn 1", Scenario([first]))
    one = create(http, payload("turn 1"))

    later = FakeFile(png_bytes(), "/mnt/data/later.png")
    follow_up = FakeContainer([later])
    other = FakeContainer([FakeFile(b"o", "/mnt/data/other.txt")])
    server.register("turn 2", Scenario([follow_up, other], output_text="Again.", polls_before_done=1))
    registered_id, later_id = follow_up.container_id, later.file_id
    two = create(http, payload("turn 2", previous_response_id=one["id"], background=True))

    assert follow_up.container_id == first.container_id != registered_id
    assert later.file_id == later_id
    # The files are in the reused container as soon as the run is created.
    listed = {item["id"]: item for item in list_all(http, first.container_id, order="asc")}
    assert list(listed) == [earlier.file_id, first_made.file_id, later.file_id]
    assert listed[earlier.file_id]["created_at"] == 1_700_000_000
    assert listed[first_made.file_id]["created_at"] == one["created_at"]
    assert listed[later.file_id]["created_at"] >= two["created_at"]
    assert {item["container_id"] for item in listed.values()} == {first.container_id}
    content_url = f"/openai/v1/containers/{first.container_id}/files/{later.file_id}/content"
    assert http.get(content_url, params=PREVIEW).content == later.content
    assert http.get(f"/openai/v1/containers/{registered_id}/files", params=PREVIEW).status_code == 404

    assert retrieve(http, two["id"])["status"] == "queued"
    final = Response.model_validate(retrieve(http, two["id"]))
    assert final.previous_response_id == one["id"]
    calls = [item for item in final.output if isinstance(item, ResponseCodeInterpreterToolCall)]
    assert [c.container_id for c in calls] == [first.container_id, other.container_id]
    message = final.output[-1]
    assert isinstance(message, ResponseOutputMessage)
    content = message.content[0]
    assert isinstance(content, ResponseOutputText)
    citations = [a for a in content.annotations if isinstance(a, AnnotationContainerFileCitation)]
    assert [(a.container_id, a.file_id) for a in citations] == [
        (first.container_id, later.file_id),  # only this run's files are cited
        (other.container_id, other.files[0].file_id),
    ]
    assert [item["id"] for item in list_all(http, other.container_id)] == [other.files[0].file_id]


def test_a_chain_of_runs_keeps_one_container(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    containers = [FakeContainer([FakeFile(f"{n}".encode(), f"/mnt/data/{n}.txt")]) for n in range(3)]
    previous: str | None = None
    for n, container in enumerate(containers):
        server.register(f"step {n}", Scenario([container]))
        previous = create(http, payload(f"step {n}", previous_response_id=previous))["id"]

    assert {c.container_id for c in containers} == {containers[0].container_id}
    listed = list_all(http, containers[0].container_id, order="asc")
    assert [item["path"] for item in listed] == ["/mnt/data/0.txt", "/mnt/data/1.txt", "/mnt/data/2.txt"]


def test_a_previous_run_without_containers_reuses_nothing(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    server.register("no files", Scenario([], output_text="Nothing."))
    container = FakeContainer([FakeFile(b"n", "/mnt/data/new.txt")])
    server.register("files now", Scenario([container]))
    registered_id = container.container_id
    one = create(http, payload("no files"))

    create(http, payload("files now", previous_response_id=one["id"]))

    assert container.container_id == registered_id
    assert len(list_all(http, registered_id)) == 1


def test_an_unknown_previous_response_is_refused(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    answer = http.post("/openai/v1/responses", json=payload(previous_response_id="resp_nope"))

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["message"] == "Previous response with id 'resp_nope' not found."
    assert (error["type"], error["param"]) == ("invalid_request_error", "previous_response_id")
    assert server.created_count() == 0


# -- file created_at ------------------------------------------------------------------------------


def test_files_are_created_when_their_run_is(
    server: FakeAzureOpenAI, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1_800_000_000]
    monkeypatch.setattr(fake_module, "_now", lambda: clock[0])
    fresh = FakeFile(b"f", "/mnt/data/fresh.txt")
    past = FakeFile(b"p", "/mnt/data/past.txt", created_at=1_600_000_000)
    container = FakeContainer([fresh, past])
    server.register("timed", Scenario([container]))
    assert (fresh.file_id != "", fresh.created_at) == (True, 0)  # registration fills in ids only

    clock[0] += 3600  # the run starts an hour after registration
    created = create(http, payload("timed", file_ids=["assistant-input"]))

    assert created["created_at"] == clock[0]
    assert fresh.created_at == clock[0]
    listed = {item["path"]: item["created_at"] for item in list_all(http, container.container_id)}
    assert listed == {
        "/mnt/data/fresh.txt": clock[0],
        "/mnt/data/past.txt": 1_600_000_000,  # set by the test: kept
        "/mnt/data/assistant-input.bin": clock[0],
    }
    added = server.add_container(FakeContainer([FakeFile(b"a", "/mnt/data/a.txt")]))
    assert added.files[0].created_at == clock[0]  # no run: made when added


def test_demo_files_are_never_older_than_their_response(http: httpx.Client) -> None:
    created = Response.model_validate(create(http, payload("no scenario for this")))

    call = created.output[0]
    assert isinstance(call, ResponseCodeInterpreterToolCall)
    assert all(item["created_at"] >= created.created_at for item in list_all(http, call.container_id))


# -- in-process helpers ---------------------------------------------------------------------------


def test_in_process_helpers(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    file = FakeFile(b"e", "/mnt/data/elsewhere.txt")
    server.register("elsewhere", Scenario([FakeContainer([file])], polls_before_done=5))
    body = payload("elsewhere", background=True)

    made = server.create(body)

    assert Response.model_validate(made).status == "queued"
    assert server.last_response_body == body
    assert server.created_count() == 1
    assert server.requests == []  # nothing went over HTTP
    assert server.response(made["id"]) == made
    assert server.polls(made["id"]) == 0  # response() is not a poll
    assert retrieve(http, made["id"])["status"] == "queued"
    assert server.polls(made["id"]) == 1
    assert server.response(made["id"]) == retrieve(http, made["id"])  # in_progress, now and over HTTP

    server.finish(made["id"])

    final = retrieve(http, made["id"])
    assert final["status"] == "completed"
    assert server.response(made["id"]) == final
    server.finish(made["id"])  # a no-op once ended
    assert server.polls(made["id"]) == 3

    create(http, payload())
    server.create(payload(store=False))
    assert server.created_count() == 3
    assert server.response("resp_unknown") is None
    with pytest.raises(KeyError):
        server.polls("resp_unknown")
    with pytest.raises(KeyError):
        server.finish("resp_unknown")
    with pytest.raises(FakeApiError) as refused:
        server.create(payload(background=True, store=False))
    assert refused.value.status == 400
    assert refused.value.body["error"]["param"] == "store"
    assert server.created_count() == 3


def test_helper_answers_are_copies(server: FakeAzureOpenAI) -> None:
    made = server.create(payload(metadata={"k": "v"}))
    made["status"] = "changed"
    made["metadata"]["k"] = "changed"

    stored = server.response(made["id"])

    assert stored is not None
    assert (stored["status"], stored["metadata"]) == ("completed", {"k": "v"})


def test_concurrent_creates_are_all_counted(server: FakeAzureOpenAI) -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def make() -> None:
        with httpx.Client(base_url=server.endpoint, headers={"api-key": API_KEY}) as client:
            for _ in range(5):
                response_id = create(client, payload(background=True))["id"]
                with lock:
                    ids.append(response_id)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert server.created_count() == 20
    assert len(set(ids)) == 20
    assert all(server.response(response_id) is not None for response_id in ids)


# -- container file routes --------------------------------------------------------------------


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_pagination_visits_every_file_exactly_once(server: FakeAzureOpenAI, http: httpx.Client, order: str) -> None:
    files = [FakeFile(f"{n}".encode(), f"/mnt/data/f{n}.txt") for n in range(5)]
    container = server.add_container(FakeContainer(files))

    listed = list_all(http, container.container_id, order=order)

    ids = [f.file_id for f in files]
    assert [item["id"] for item in listed] == (ids if order == "asc" else ids[::-1])
    first = http.get(f"/openai/v1/containers/{container.container_id}/files", params={**PREVIEW, "order": order})
    assert len(first.json()["data"]) == 2  # page_size
    assert first.json()["has_more"] is True
    item = listed[0]
    assert item["object"] == "container.file"
    assert item["container_id"] == container.container_id
    assert item["bytes"] == 1


def test_has_more_is_false_on_an_exactly_full_last_page(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    container = server.add_container(FakeContainer([FakeFile(b"", f"/mnt/data/{n}") for n in range(4)]))
    url = f"/openai/v1/containers/{container.container_id}/files"

    first = http.get(url, params={**PREVIEW, "order": "asc"}).json()
    second = http.get(url, params={**PREVIEW, "order": "asc", "after": first["last_id"]}).json()

    assert (len(first["data"]), first["has_more"]) == (2, True)
    assert (len(second["data"]), second["has_more"]) == (2, False)


def test_limit_smaller_than_the_page_size_wins(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    container = server.add_container(FakeContainer([FakeFile(b"", f"/mnt/data/{n}") for n in range(3)]))
    url = f"/openai/v1/containers/{container.container_id}/files"

    assert len(http.get(url, params={**PREVIEW, "limit": "1"}).json()["data"]) == 1
    assert len(http.get(url, params={**PREVIEW, "limit": "100"}).json()["data"]) == 2
    assert len(list_all(http, container.container_id, limit="1")) == 3
    assert http.get(url, params={**PREVIEW, "limit": "0"}).status_code == 400
    assert http.get(url, params={**PREVIEW, "after": "cfile_unknown"}).status_code == 400


def test_empty_container_lists_nothing(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    container = server.add_container(FakeContainer([]))

    page = http.get(f"/openai/v1/containers/{container.container_id}/files", params=PREVIEW).json()

    assert page == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


def test_download_bytes_equal_and_file_object(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    content = os.urandom(3 * 64 * 1024 + 123)  # several write chunks and a partial one
    file = FakeFile(content, "/mnt/data/blob.bin")
    container = server.add_container(FakeContainer([file]))
    base = f"/openai/v1/containers/{container.container_id}/files/{file.file_id}"

    answer = http.get(f"{base}/content", params=PREVIEW)
    info = FileRetrieveResponse.model_validate(http.get(base, params=PREVIEW).json())

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["content-length"] == str(len(content))
    assert answer.content == content
    assert (info.id, info.bytes, info.path, info.source) == (file.file_id, len(content), file.path, "assistant")


def test_empty_file_downloads(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    file = FakeFile(b"", "/mnt/data/empty.txt")
    container = server.add_container(FakeContainer([file]))

    answer = http.get(f"/openai/v1/containers/{container.container_id}/files/{file.file_id}/content", params=PREVIEW)

    assert answer.status_code == 200
    assert answer.headers["content-length"] == "0"
    assert answer.content == b""


@pytest.mark.parametrize("suffix", ["", "/{fid}", "/{fid}/content"])
@pytest.mark.parametrize("version", [None, "2025-04-01-preview", "v1", "2025-05-01-PREVIEW"])
def test_container_routes_want_api_version_preview(
    server: FakeAzureOpenAI, http: httpx.Client, suffix: str, version: str | None
) -> None:
    file = FakeFile(b"x", "/mnt/data/x")
    container = server.add_container(FakeContainer([file]))
    url = f"/openai/v1/containers/{container.container_id}/files" + suffix.format(fid=file.file_id)
    params = {"api-version": version} if version else {}

    answer = http.get(url, params=params)

    assert answer.status_code == 400
    assert answer.json() == {"error": {"code": "BadRequest", "message": "API version not supported"}}
    assert http.get(url, params=PREVIEW).status_code == 200


@pytest.mark.parametrize("suffix", ["", "/{fid}", "/{fid}/content"])
def test_expired_container_answers_400(server: FakeAzureOpenAI, http: httpx.Client, suffix: str) -> None:
    file = FakeFile(b"x", "/mnt/data/x")
    container = server.add_container(FakeContainer([file]))
    url = f"/openai/v1/containers/{container.container_id}/files" + suffix.format(fid=file.file_id)
    assert http.get(url, params=PREVIEW).status_code == 200

    server.expire(container.container_id)
    answer = http.get(url, params=PREVIEW)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "BadRequest"
    assert answer.json()["error"]["message"] == "Container is expired."


def test_a_container_can_be_expired_before_its_response(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    container = FakeContainer([FakeFile(b"x", "/mnt/data/x")])
    server.register("soon expired", Scenario([container]))
    server.expire(container.container_id)

    Response.model_validate(create(http, payload("soon expired")))  # the run itself still answers
    answer = http.get(f"/openai/v1/containers/{container.container_id}/files", params=PREVIEW)

    assert answer.status_code == 400
    assert "Container is expired." in answer.text
    with pytest.raises(KeyError):
        server.expire("cntr_unknown")


def test_registered_containers_exist_only_once_a_response_used_them(
    server: FakeAzureOpenAI, http: httpx.Client
) -> None:
    container = FakeContainer([FakeFile(b"x", "/mnt/data/x")])
    server.register("later", Scenario([container]))
    url = f"/openai/v1/containers/{container.container_id}/files"

    assert http.get(url, params=PREVIEW).status_code == 404
    create(http, payload("later"))
    assert http.get(url, params=PREVIEW).status_code == 200


def test_unknown_container_or_file_is_404(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    file = FakeFile(b"x", "/mnt/data/x")
    container = server.add_container(FakeContainer([file]))
    cid = container.container_id

    for url in [
        "/openai/v1/containers/cntr_unknown/files",
        f"/openai/v1/containers/cntr_unknown/files/{file.file_id}/content",
        f"/openai/v1/containers/{cid}/files/cfile_unknown",
        f"/openai/v1/containers/{cid}/files/cfile_unknown/content",
    ]:
        answer = http.get(url, params=PREVIEW)
        assert answer.status_code == 404, url
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"]["message"], url


def test_classic_files_content_route_is_404(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    file = FakeFile(b"x", "/mnt/data/x")
    server.add_container(FakeContainer([file]))
    not_found = {"error": {"code": "404", "message": "Resource not found"}}

    for params in ({}, PREVIEW, {"api-version": "2025-04-01-preview"}):
        answer = http.get(f"/openai/files/{file.file_id}/content", params=params)
        assert answer.status_code == 404
        assert answer.json() == not_found
    assert http.get("/openai/v1/somewhere/else").json() == not_found
    assert http.get("/openai/v1/responses").status_code == 404  # wrong method


# -- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"api-key": API_KEY}, 200),
        ({"Authorization": f"Bearer {TOKEN}"}, 200),
        ({"Authorization": f"bearer {TOKEN}"}, 200),
        ({"Authorization": f"Bearer {API_KEY}"}, 401),  # the key is never a bearer token
        ({}, 401),
        ({"api-key": "wrong"}, 401),
        ({"api-key": "wrong", "Authorization": f"Bearer {TOKEN}"}, 401),
        ({"api-key": API_KEY, "Authorization": f"Bearer {API_KEY}"}, 200),
        ({"Authorization": "Bearer other-token"}, 401),
        ({"Authorization": TOKEN}, 401),
    ],
)
@pytest.mark.parametrize("route", ["responses", "retrieve", "cancel", "list", "content"])
def test_auth(server: FakeAzureOpenAI, headers: dict[str, str], status: int, route: str) -> None:
    file = FakeFile(b"x", "/mnt/data/x")
    container = server.add_container(FakeContainer([file]))
    server.register("running", Scenario([], polls_before_done=1))
    running = server.create(payload("running", background=True))["id"]
    with httpx.Client(base_url=server.endpoint, headers=headers) as client:
        if route == "responses":
            answer = client.post("/openai/v1/responses", json=payload())
        elif route == "retrieve":
            answer = client.get(f"/openai/v1/responses/{running}")
        elif route == "cancel":
            answer = client.post(f"/openai/v1/responses/{running}/cancel")
        elif route == "list":
            answer = client.get(f"/openai/v1/containers/{container.container_id}/files", params=PREVIEW)
        else:
            answer = client.get(
                f"/openai/v1/containers/{container.container_id}/files/{file.file_id}/content", params=PREVIEW
            )

    assert answer.status_code == status
    assert server.polls(running) == (1 if route == "retrieve" and status == 200 else 0)
    if status == 401:
        error = answer.json()["error"]
        assert error["code"] == "401"
        assert error["message"].startswith("Access denied due to invalid subscription key or wrong API endpoint")


def test_api_key_listed_as_a_bearer_token_is_still_refused() -> None:
    with FakeAzureOpenAI(api_key=API_KEY, bearer_tokens=[API_KEY, TOKEN]) as fake:
        answer = httpx.post(
            f"{fake.endpoint}/openai/v1/responses", json=payload(), headers={"Authorization": f"Bearer {API_KEY}"}
        )
    assert answer.status_code == 401


# -- fault injection --------------------------------------------------------------------------


def test_cut_next_download_truncates_the_body(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    content = os.urandom(200_000)
    file = FakeFile(content, "/mnt/data/big.bin")
    container = server.add_container(FakeContainer([file]))
    url = f"/openai/v1/containers/{container.container_id}/files/{file.file_id}/content"
    server.cut_next_download(after_bytes=70_000)

    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError), http.stream("GET", url, params=PREVIEW) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-length"] == str(len(content))
        for piece in answer.iter_bytes():
            received += piece

    assert bytes(received) == content[:70_000]
    assert http.get(url, params=PREVIEW).content == content  # only the next download was cut


def test_cut_next_download_times(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    file = FakeFile(b"0123456789", "/mnt/data/small.bin")
    container = server.add_container(FakeContainer([file]))
    url = f"/openai/v1/containers/{container.container_id}/files/{file.file_id}/content"
    server.cut_next_download(after_bytes=0, times=2)

    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(url, params=PREVIEW)
    assert http.get(url, params=PREVIEW).content == b"0123456789"


def test_fail_next(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    file = FakeFile(b"x", "/mnt/data/x")
    container = server.add_container(FakeContainer([file]))
    content_url = f"/openai/v1/containers/{container.container_id}/files/{file.file_id}/content"
    list_url = f"/openai/v1/containers/{container.container_id}/files"
    server.fail_next("/content", 503, headers={"Retry-After": "7"}, times=2)
    server.fail_next("/responses", 429, body={"error": {"code": "429", "message": "Slow down."}})

    assert http.get(list_url, params=PREVIEW).status_code == 200  # a path that does not match
    for _ in range(2):
        failed = http.get(content_url, params=PREVIEW)
        assert failed.status_code == 503
        assert failed.headers["retry-after"] == "7"
        assert failed.json()["error"]["code"] == "503"
    assert http.get(content_url, params=PREVIEW).content == b"x"

    throttled = http.post("/openai/v1/responses", json=payload())
    assert throttled.status_code == 429
    assert throttled.json() == {"error": {"code": "429", "message": "Slow down."}}
    assert http.post("/openai/v1/responses", json=payload()).status_code == 200


# -- the HTTP layer ---------------------------------------------------------------------------


def test_requests_are_recorded(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    body = payload()
    create(http, body)
    http.get("/openai/v1/containers/cntr_x/files", params={**PREVIEW, "limit": "5"}, headers={"X-Trace": "t1"})

    posted, listed = server.requests
    assert (posted.method, posted.path, posted.query) == ("POST", "/openai/v1/responses", {})
    assert posted.headers["api-key"] == API_KEY
    assert posted.headers["content-type"] == "application/json"
    assert httpx.Response(200, content=posted.body).json() == body
    assert (listed.method, listed.path) == ("GET", "/openai/v1/containers/cntr_x/files")
    assert listed.query == {"api-version": "preview", "limit": "5"}
    assert listed.headers["x-trace"] == "t1"
    assert listed.body == b""


def test_connections_are_kept_alive(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    peers = set()
    for _ in range(3):
        with http.stream("GET", "/openai/files/x/content") as answer:
            answer.read()
            stream = answer.extensions["network_stream"]
            peers.add(stream.get_extra_info("client_addr"))
            assert answer.http_version == "HTTP/1.1"
            assert answer.headers.get("connection", "").lower() != "close"
            assert answer.headers["content-length"] == str(len(answer.content))

    assert len(peers) == 1  # one socket served all three requests


def test_stop_ends_kept_alive_connections() -> None:
    fake = FakeAzureOpenAI(api_key=API_KEY).start()
    endpoint = fake.endpoint
    with httpx.Client(base_url=endpoint, headers={"api-key": API_KEY}) as client:
        assert client.get("/nowhere").status_code == 404  # leaves a kept-alive connection open
        fake.stop()
        with pytest.raises(httpx.TransportError):
            client.get("/nowhere")
    with pytest.raises(RuntimeError):
        _ = fake.endpoint


# -- the openai SDK against the fake ----------------------------------------------------------


def test_the_openai_sdk_works_against_the_fake(server: FakeAzureOpenAI) -> None:
    files = [FakeFile(f"file {n}".encode(), f"/mnt/data/f{n}.txt") for n in range(5)]
    container = FakeContainer(files)
    server.register("sdk", Scenario([container], output_text="SDK."))
    client = openai.OpenAI(
        api_key=TOKEN,  # sent as "Authorization: Bearer ...", like an Entra ID token
        base_url=f"{server.endpoint}/openai/v1/",
        default_query=PREVIEW,
        max_retries=0,
    )
    with client:
        response = client.responses.create(
            model="gpt-test",
            input="sdk",
            tools=[{"type": "code_interpreter", "container": {"type": "auto"}}],
            include=["code_interpreter_call.outputs"],
        )
        listed = list(client.containers.files.list(container.container_id, order="asc"))
        downloaded = client.containers.files.content.retrieve(files[3].file_id, container_id=container.container_id)

    assert response.output_text.startswith("SDK.")
    assert [f.id for f in listed] == [f.file_id for f in files]  # three pages of two
    assert downloaded.content == b"file 3"
    assert sum(r.path.endswith("/files") for r in server.requests) == 3


def test_the_openai_sdk_runs_in_the_background(server: FakeAzureOpenAI) -> None:
    file = FakeFile(b"made in the background", "/mnt/data/bg.txt")
    server.register("sdk slow", Scenario([FakeContainer([file])], output_text="Background.", polls_before_done=3))
    server.register("sdk quick", Scenario([FakeContainer([FakeFile(b"q", "/mnt/data/q.txt")])]))
    client = openai.OpenAI(
        api_key=API_KEY,  # also sent as a bearer token, which the api-key header overrides
        base_url=f"{server.endpoint}/openai/v1/",
        default_headers={"api-key": API_KEY},
        max_retries=0,
    )
    with client:

        def start(prompt: str) -> Response:
            return client.responses.create(
                model="gpt-test",
                input=prompt,
                tools=[{"type": "code_interpreter", "container": {"type": "auto"}}],
                include=["code_interpreter_call.outputs"],
                background=True,
                store=True,
            )

        slow = start("sdk slow")
        polled = client.responses.retrieve(slow.id, include=["code_interpreter_call.outputs"])
        cancelled = client.responses.cancel(slow.id)
        after = client.responses.retrieve(slow.id)
        quick = start("sdk quick")
        done = client.responses.retrieve(quick.id)
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.cancel(quick.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve("resp_unknown")

    assert (slow.status, slow.background, slow.output) == ("queued", True, [])
    assert (polled.id, polled.status) == (slow.id, "queued")
    assert cancelled.status == "cancelled"
    assert cancelled.output_text.startswith("Background.")
    assert cited_file_ids(cancelled) == [file.file_id]
    assert after.status == "cancelled"
    assert (quick.status, done.status) == ("queued", "completed")
    assert "Cannot cancel a completed response." in str(refused.value)
    assert server.created_count() == 2
    assert [(r.method, r.path) for r in server.requests[:3]] == [
        ("POST", "/openai/v1/responses"),
        ("GET", f"/openai/v1/responses/{slow.id}"),
        ("POST", f"/openai/v1/responses/{slow.id}/cancel"),
    ]
    assert all(r.headers["api-key"] == API_KEY for r in server.requests)


def test_files_upload_and_delete_speak_the_sdk_types_and_mount_the_file_as_a_user_file(
    server: FakeAzureOpenAI, http: httpx.Client
) -> None:
    content = b"region,sales\nnorth,3\n" * 5000

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(content), 10_000):
            yield content[start:start + 10_000]

    class Reader:
        def __init__(self) -> None:
            self.chunks = pieces()

        def read(self, size: int = -1) -> bytes:
            return next(self.chunks, b"")

    answer = http.post("/openai/v1/files", data={"purpose": "assistants"},
                       files={"file": ("sales.csv", Reader(), "text/csv")})  # type: ignore[dict-item]
    assert answer.status_code == 200, answer.text
    uploaded = FileObject.model_validate(answer.json())
    assert (uploaded.filename, uploaded.purpose, uploaded.bytes) == ("sales.csv", "assistants", len(content))
    received = server.uploads[uploaded.id]
    assert received.content == content  # byte for byte, through the chunked multipart body
    assert received.chunks > 1

    made = create(http, payload(file_ids=[uploaded.id]))
    container_id = Response.model_validate(made).output[0].container_id  # type: ignore[union-attr]
    listed = http.get(f"/openai/v1/containers/{container_id}/files", params=PREVIEW).json()["data"]
    user = [FileListResponse.model_validate(item) for item in listed if item["path"] == "/mnt/data/sales.csv"]
    assert [item.source for item in user] == ["user"]
    mounted = http.get(f"/openai/v1/containers/{container_id}/files/{user[0].id}/content", params=PREVIEW)
    assert mounted.content == content

    deleted = http.delete(f"/openai/v1/files/{uploaded.id}")
    assert FileDeleted.model_validate(deleted.json()).deleted is True
    assert http.delete(f"/openai/v1/files/{uploaded.id}").status_code == 404  # already gone
    assert http.post("/openai/v1/files", data={"purpose": "nonsense"},
                     files={"file": ("a.txt", b"x", "text/plain")}).status_code == 400
    assert http.post("/openai/v1/files", files={"file": ("a.txt", b"x", "text/plain")}).status_code == 400
