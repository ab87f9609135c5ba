"""The fake's other tools, over real HTTP and against the openai SDK's own types: the hosted shell
tool's container (a shell_call naming a container_reference, and its output) and the image_generation
tool (image_generation_call items with the image in ``result``, and the header Azure OpenAI requires)."""

from __future__ import annotations

import base64
from typing import Any

import httpx
from openai.types.containers import FileListResponse
from openai.types.responses import (
    Response,
    ResponseFunctionShellToolCall,
    ResponseFunctionShellToolCallOutput,
    ResponseOutputMessage,
)
from openai.types.responses.response_container_reference import ResponseContainerReference
from openai.types.responses.response_output_item import ImageGenerationCall

from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, FakeImage, Scenario, png_bytes
from tests.fake_openai.server import IMAGE_DEPLOYMENT_HEADER
from tests.support.flow import create_body

PREVIEW = {"api-version": "preview"}
IMAGE_TOOL = {"type": "image_generation", "output_format": "webp"}


def with_images(prompt: str) -> dict[str, Any]:
    return create_body(prompt, tools=[*create_body(prompt)["tools"], IMAGE_TOOL], background=False)


def test_a_shell_call_names_its_container_and_the_container_lists_the_file(
    server: FakeAzureOpenAI, http: httpx.Client
) -> None:
    report = FakeFile(b"%PDF-1.4", "/mnt/data/report.pdf", cite=None)
    server.register("shell please", Scenario([FakeContainer([report], tool="shell")]))
    raw = http.post("/openai/v1/responses", json=create_body("shell please", background=False)).json()
    response = Response.model_validate(raw)
    call, output, message = response.output
    assert isinstance(call, ResponseFunctionShellToolCall)
    assert isinstance(output, ResponseFunctionShellToolCallOutput)
    assert isinstance(message, ResponseOutputMessage)
    assert output.call_id == call.call_id
    assert isinstance(call.environment, ResponseContainerReference)
    container_id = call.environment.container_id
    assert [i["type"] for i in raw["output"]] == ["shell_call", "shell_call_output", "message"]  # no code interpreter

    listed = http.get(f"/openai/v1/containers/{container_id}/files", params=PREVIEW).json()["data"]
    (entry,) = [FileListResponse.model_validate(item) for item in listed]
    assert (entry.id, entry.path, entry.source) == (report.file_id, "/mnt/data/report.pdf", "assistant")
    content = http.get(f"/openai/v1/containers/{container_id}/files/{report.file_id}/content", params=PREVIEW)
    assert content.content == b"%PDF-1.4"


def test_image_generation_calls_carry_the_image_and_validate(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    poster, sketch = png_bytes(40, 30), b"RIFF....WEBPVP8 "
    images = [FakeImage(poster), FakeImage(sketch, output_format=None), FakeImage(b"", status="failed")]
    server.register("draw please", Scenario([FakeContainer([])], images=images))
    answer = http.post("/openai/v1/responses", json=with_images("draw please"),
                       headers={IMAGE_DEPLOYMENT_HEADER: "gpt-image-1"})
    assert answer.status_code == 200, answer.text
    response = Response.model_validate(answer.json())
    calls = [item for item in response.output if isinstance(item, ImageGenerationCall)]
    assert [c.id for c in calls] == [image.call_id for image in images]
    assert all(c.id.startswith("ig_") for c in calls)
    assert base64.b64decode(calls[0].result or "") == poster and calls[0].output_format == "png"
    assert base64.b64decode(calls[1].result or "") == sketch and calls[1].output_format is None
    assert calls[2].status == "failed" and calls[2].result is None
    assert calls[0].revised_prompt
    # The stored response answers the same items to a GET.
    again = http.get(f"/openai/v1/responses/{response.id}", params=PREVIEW)
    assert Response.model_validate(again.json()).output == response.output


def test_the_image_tool_without_the_deployment_header_is_400(server: FakeAzureOpenAI, http: httpx.Client) -> None:
    server.register("draw", Scenario([FakeContainer([])], images=[FakeImage(png_bytes())]))
    answer = http.post("/openai/v1/responses", json=with_images("draw"))
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert server.created_count() == 0
    # Without the tool no image is made, whatever the scenario holds.
    plain = http.post("/openai/v1/responses", json=create_body("draw", background=False)).json()
    assert [i["type"] for i in plain["output"]] == ["code_interpreter_call", "message"]


def test_the_named_scenarios_for_the_tools(http: httpx.Client) -> None:
    shell = Response.model_validate(
        http.post("/openai/v1/responses", json=create_body("fake:shell-file go", background=False)).json()
    )
    assert [i.type for i in shell.output] == ["shell_call", "shell_call_output", "message"]
    drawn = http.post("/openai/v1/responses", json=with_images("fake:generated-image go"),
                      headers={IMAGE_DEPLOYMENT_HEADER: "gpt-image-1"})
    response = Response.model_validate(drawn.json())
    (call,) = [i for i in response.output if isinstance(i, ImageGenerationCall)]
    assert base64.b64decode(call.result or "").startswith(b"\x89PNG")
