"""The runs a person can steer the fake into (``--scenario NAME`` for every prompt, ``fake:NAME`` in
one prompt), checked over real HTTP and against the openai SDK's own types: every answer of every
scenario still validates as the SDK's Response and container file types."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
from openai.types.containers import FileListResponse
from openai.types.responses import Response, ResponseCodeInterpreterToolCall, ResponseOutputMessage, ResponseOutputText
from openai.types.responses.response_output_text import AnnotationContainerFileCitation

from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario, scenarios
from tests.fake_openai.__main__ import main as fake_main
from tests.fake_openai.__main__ import parse_args
from tests.fake_openai.tests.conftest import API_KEY
from tests.support.flow import create_body

PREVIEW = {"api-version": "preview"}


def start(http: httpx.Client, prompt: str) -> Response:
    answer = http.post("/openai/v1/responses", json=create_body(prompt, store=True))
    assert answer.status_code == 200, answer.text
    return Response.model_validate(answer.json())


def poll(http: httpx.Client, response_id: str) -> Response:
    answer = http.get(f"/openai/v1/responses/{response_id}")
    assert answer.status_code == 200, answer.text
    return Response.model_validate(answer.json())


def until_ended(http: httpx.Client, response_id: str, most: int = 20) -> tuple[Response, list[str]]:
    """Poll until the run has ended; the final response and every status seen on the way."""
    seen: list[str] = []
    for _ in range(most):
        response = poll(http, response_id)
        seen.append(response.status or "")
        if response.status not in ("queued", "in_progress"):
            return response, seen
    raise AssertionError(f"still running after {most} polls: {seen}")


def container_ids(response: Response) -> list[str]:
    return [item.container_id for item in response.output if isinstance(item, ResponseCodeInterpreterToolCall)]


def citations(response: Response) -> list[AnnotationContainerFileCitation]:
    message = response.output[-1]
    assert isinstance(message, ResponseOutputMessage)
    text = message.content[0]
    assert isinstance(text, ResponseOutputText)
    return [a for a in text.annotations if isinstance(a, AnnotationContainerFileCitation)]


def listing(http: httpx.Client, container_id: str, after: str | None = None) -> httpx.Response:
    params = {**PREVIEW, **({"after": after} if after else {})}
    return http.get(f"/openai/v1/containers/{container_id}/files", params=params)


def listed(http: httpx.Client, container_id: str) -> list[dict[str, Any]]:
    """Every file, page after page, each checked against the SDK's type."""
    files: list[dict[str, Any]] = []
    after = None
    while True:
        answer = listing(http, container_id, after)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        for item in page["data"]:
            FileListResponse.model_validate(item)
        files += page["data"]
        if not page["has_more"]:
            return files
        after = page["last_id"]


def download(http: httpx.Client, container_id: str, file_id: str) -> httpx.Response:
    return http.get(f"/openai/v1/containers/{container_id}/files/{file_id}/content", params=PREVIEW)


def test_by_default_every_prompt_gets_the_sales_chart_run(http: httpx.Client) -> None:
    response, seen = until_ended(http, start(http, "anything at all").id)
    assert seen == ["completed"]  # it ends at the first poll
    (container,) = container_ids(response)
    files = {item["path"]: item for item in listed(http, container)}
    assert set(files) == {"/mnt/data/sales chart.png", "/mnt/data/sales_by_region.csv", "/mnt/data/summary.md",
                          "/mnt/data/input_sales.csv"}
    assert files["/mnt/data/input_sales.csv"]["source"] == "user"
    assert [c.filename for c in citations(response)] == ["sales chart.png", "sales_by_region.csv"]
    chart = download(http, container, files["/mnt/data/sales chart.png"]["id"])
    assert chart.status_code == 200 and chart.content.startswith(b"\x89PNG")


def test_in_progress_stays_running_for_the_polls_asked(http: httpx.Client) -> None:
    response, seen = until_ended(http, start(http, "fake:in-progress:3 plot it").id)
    assert seen == ["queued", "in_progress", "in_progress", "completed"]
    assert len(citations(response)) == 2  # then it is the sales chart


def test_in_progress_without_a_number_runs_until_it_is_cancelled(http: httpx.Client) -> None:
    created = start(http, "plot it fake:in-progress")
    assert [poll(http, created.id).status for _ in range(30)][-1] == "in_progress"
    cancelled = http.post(f"/openai/v1/responses/{created.id}/cancel")
    assert cancelled.status_code == 200
    assert Response.model_validate(cancelled.json()).status == "cancelled"
    assert poll(http, created.id).status == "cancelled"


def test_no_files_is_a_code_interpreter_run_that_wrote_nothing(http: httpx.Client) -> None:
    response, _ = until_ended(http, start(http, "fake:no-files").id)
    assert response.status == "completed"
    (container,) = container_ids(response)
    assert listed(http, container) == []
    assert citations(response) == []


@pytest.mark.parametrize(("spec", "status", "code"), [("failing-file", 404, "NotFound"),
                                                       ("failing-file:500", 500, "InternalServerError")])
def test_failing_file_is_listed_and_cited_but_its_download_fails(
    http: httpx.Client, spec: str, status: int, code: str
) -> None:
    response, _ = until_ended(http, start(http, f"fake:{spec} and a forecast").id)
    (container,) = container_ids(response)
    files = {item["path"]: item["id"] for item in listed(http, container)}
    forecast = files["/mnt/data/forecast.xlsx"]
    assert forecast in [c.file_id for c in citations(response)]
    for _ in range(2):  # every time, not once
        failed = download(http, container, forecast)
        assert failed.status_code == status
        assert failed.json()["error"]["code"] == code
    if status == 404:
        assert forecast in failed.json()["error"]["message"]  # names the file, as the service does
    assert download(http, container, files["/mnt/data/sales_by_region.csv"]).status_code == 200


def test_expired_container_answers_400_to_listing_and_downloads(http: httpx.Client) -> None:
    response, _ = until_ended(http, start(http, "fake:expired").id)
    assert response.status == "completed"
    (container,) = container_ids(response)
    refused = [listing(http, container), download(http, container, citations(response)[0].file_id)]
    assert [r.status_code for r in refused] == [400, 400]
    assert all(r.json()["error"]["message"] == "Container is expired." for r in refused)


def test_each_run_of_a_scenario_has_ids_of_its_own(http: httpx.Client) -> None:
    first, second = (until_ended(http, start(http, "fake:failing-file").id)[0] for _ in range(2))
    assert container_ids(first) != container_ids(second)
    assert {c.file_id for c in citations(first)}.isdisjoint(c.file_id for c in citations(second))


def test_the_default_can_be_changed_and_a_prompt_or_a_registration_wins_over_it() -> None:
    with FakeAzureOpenAI(api_key=API_KEY, default_scenario="no-files") as fake, \
            httpx.Client(base_url=fake.endpoint, headers={"api-key": API_KEY}, timeout=10) as http:
        fake.register("registered", Scenario([FakeContainer([FakeFile(b"x", "/mnt/data/x.txt")])]))
        plain = until_ended(http, start(http, "plot it").id)[0]
        named = until_ended(http, start(http, "fake:in-progress:1").id)
        registered = until_ended(http, start(http, "registered").id)[0]
        assert citations(plain) == [] and listed(http, container_ids(plain)[0]) == []
        assert named[1] == ["queued", "completed"] and len(citations(named[0])) == 2
        assert [c.filename for c in citations(registered)] == ["x.txt"]


@pytest.mark.parametrize("prompt", ["fake:nonsense", "fake:no-files:3", "fake:failing-file:200"])
def test_an_unknown_scenario_in_a_prompt_is_a_400_naming_the_known_ones(http: httpx.Client, prompt: str) -> None:
    answer = http.post("/openai/v1/responses", json=create_body(prompt, store=True))
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "input"
    assert error["type"] == "invalid_request_error"


def test_a_marker_must_be_a_word_of_its_own(http: httpx.Client) -> None:
    response, seen = until_ended(http, start(http, "notfake:expired, a-fake:no-files, fake:expired:").id)
    assert seen == ["completed"]
    assert listing(http, container_ids(response)[0]).status_code == 200  # the sales chart, not expired


def test_the_names_are_read_as_the_command_line_and_the_docs_give_them() -> None:
    assert str(scenarios.parse("in-progress:5")) == "in-progress:5"
    assert scenarios.parse("failing-file") == scenarios.ScenarioName("failing-file")
    for bad in ("", "in-progress:five", "expired:2", "sales chart"):
        with pytest.raises(ValueError, match="fake scenario"):
            scenarios.parse(bad)
    with pytest.raises(ValueError):
        FakeAzureOpenAI(default_scenario="nonsense")
    assert parse_args(["--scenario", "in-progress:5"]).scenario == "in-progress:5"
    with pytest.raises(SystemExit):
        parse_args(["--scenario", "nonsense"])


def test_a_taken_port_is_one_line_and_exit_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert fake_main(["--port", str(taken.getsockname()[1])]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "already in use" in captured.err
