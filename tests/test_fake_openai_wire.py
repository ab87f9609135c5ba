"""The fake Azure OpenAI speaks the real wire format (checked with the openai SDK's own types)
and enforces the real endpoint's rules."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.containers import FileListResponse, FileRetrieveResponse
from openai.types.responses import Response, ResponseCodeInterpreterToolCall, ResponseOutputMessage, ResponseOutputText
from openai.types.responses.response_code_interpreter_tool_call import OutputLogs
from openai.types.responses.response_output_text import AnnotationContainerFileCitation

from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario

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
    assert fresh.created_at > 0


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


@pytest.mark.parametrize("status", ["incomplete", "failed"])
def test_other_statuses_still_validate(server: FakeAzureOpenAI, http: httpx.Client, status: str) -> None:
    server.register("p", Scenario([FakeContainer([FakeFile(b"1", "/mnt/data/1.txt")])], status=status))

    response = Response.model_validate(create(http, payload("p")))

    assert response.status == status
    assert (response.error is not None) == (status == "failed")
    assert (response.incomplete_details is not None) == (status == "incomplete")


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
@pytest.mark.parametrize("route", ["responses", "list", "content"])
def test_auth(server: FakeAzureOpenAI, headers: dict[str, str], status: int, route: str) -> None:
    file = FakeFile(b"x", "/mnt/data/x")
    container = server.add_container(FakeContainer([file]))
    with httpx.Client(base_url=server.endpoint, headers=headers) as client:
        if route == "responses":
            answer = client.post("/openai/v1/responses", json=payload())
        elif route == "list":
            answer = client.get(f"/openai/v1/containers/{container.container_id}/files", params=PREVIEW)
        else:
            answer = client.get(
                f"/openai/v1/containers/{container.container_id}/files/{file.file_id}/content", params=PREVIEW
            )

    assert answer.status_code == status
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
