"""Generated images as artifacts: each image_generation_call with a result is persisted like a
container file (blob, name, content type, size, sha256, status, event), its bytes read again from
the response and decoded block by block, and the create carries the image deployment header."""

from __future__ import annotations

import hashlib
import json
import os
from urllib.parse import unquote

import pytest

from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, FakeImage, Scenario, png_bytes
from tests.fake_openai.server import IMAGE_DEPLOYMENT_HEADER
from tests.support.flow import events, finished, post_run
from tests.support.host import FunctionsHost

IMAGE_DEPLOYMENT = "gpt-image-test"


def test_generated_images_are_persisted_beside_the_container_files(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_IMAGE_DEPLOYMENT", IMAGE_DEPLOYMENT)
    chart = FakeFile(png_bytes(), "/mnt/data/chart.png")
    poster = FakeImage(png_bytes(80, 60))
    # Larger than a block (4 MiB): decoded and uploaded block by block. No output_format on the
    # item: the request's tool asked for webp.
    large = FakeImage(b"RIFF\x00\x00\x00\x00WEBPVP8 " + os.urandom(9 * 1024 * 1024 + 5), output_format=None)
    failed = FakeImage(b"", status="failed")
    scenario = Scenario([FakeContainer([chart])], images=[poster, large, failed])

    earlier = len(fake.requests)  # the fake serves the whole session: this test's requests come after
    response_id = post_run(host, fake, scenario, image_generation={"output_format": "webp"}).json()["response_id"]
    (create,) = [r for r in fake.requests[earlier:] if r.method == "POST" and r.path == "/openai/v1/responses"]
    assert create.headers[IMAGE_DEPLOYMENT_HEADER] == IMAGE_DEPLOYMENT
    tools = json.loads(create.body)["tools"]
    assert [t["type"] for t in tools] == ["code_interpreter", "image_generation"]
    assert tools[1]["output_format"] == "webp"

    host.run_until(lambda: bool(host.peek(app_env.queue)), timeout=30, only=("watch_run",))
    queued = {m["file_id"]: m for m in (json.loads(text) for text in host.peek(app_env.queue))}
    assert queued[poster.call_id]["source"] == "image_generation"
    assert queued[poster.call_id]["container_id"] is None
    assert queued[chart.file_id]["source"] == "container"
    assert len(json.dumps(queued[large.call_id]).encode()) < 2048  # the message never carries the bytes

    final = finished(host, response_id, timeout=120)
    assert final["counts"] == {"pending": 0, "persisted": 3, "failed": 0}
    in_status = {a["file_id"]: a for a in final["artifacts"]}
    (event,) = events(host, app_env)
    in_event = {a["file_id"]: a for a in event["artifacts"]}
    assert set(in_status) == set(in_event) == {chart.file_id, poster.call_id, large.call_id}

    for image, name, content_type in ((poster, f"{poster.call_id}.png", "image/png"),
                                      (large, f"{large.call_id}.webp", "image/webp")):
        blob_name = f"{response_id}/{image.call_id}/{name}"
        blob = app_env.artifacts().get_blob_client(blob_name)
        assert blob.download_blob().readall() == image.content
        properties = blob.get_blob_properties()
        metadata = properties.metadata
        assert properties.content_settings.content_type == content_type
        assert unquote(metadata["filename"]) == name
        assert metadata["source"] == "image_generation"
        assert "container_id" not in metadata
        assert metadata["size"] == str(len(image.content))
        assert metadata["sha256"] == hashlib.sha256(image.content).hexdigest()
        for seen in (in_status[image.call_id], in_event[image.call_id]):
            assert seen["source"] == "image_generation"
            assert seen["container_id"] is None
            assert seen["filename"] == name and seen["blob_name"] == blob_name
            assert seen["state"] == "persisted"
            assert seen["size"] == len(image.content)
            assert seen["sha256"] == hashlib.sha256(image.content).hexdigest()
    assert in_status[chart.file_id]["source"] == in_event[chart.file_id]["source"] == "container"
    chart_blob = app_env.artifacts().get_blob_client(in_status[chart.file_id]["blob_name"])
    assert chart_blob.get_blob_properties().metadata["source"] == "container"


def test_an_image_gone_from_the_response_is_recorded_failed(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_IMAGE_DEPLOYMENT", IMAGE_DEPLOYMENT)
    poster = FakeImage(png_bytes())
    response_id = post_run(host, fake, Scenario([FakeContainer([])], images=[poster]),
                           image_generation=True).json()["response_id"]
    host.run_until(lambda: bool(host.peek(app_env.queue)), timeout=30, only=("watch_run",))
    fake.drop_output_items(response_id, "image_generation_call")  # gone when the persist step reads it again
    final = finished(host, response_id)
    (artifact,) = final["artifacts"]
    assert artifact["state"] == "failed" and artifact["code"] == "file_gone"
    assert artifact["source"] == "image_generation"
    assert events(host, app_env)[0]["counts"]["failed"] == 1


def test_the_image_tool_needs_the_image_deployment(host: FunctionsHost, fake: FakeAzureOpenAI) -> None:
    before = fake.created_count()
    call = post_run(host, fake, Scenario([FakeContainer([])]), expect=400, image_generation=True)
    assert call.json()["error"]["field"] == "image_generation"
    assert "AZURE_OPENAI_IMAGE_DEPLOYMENT" in call.json()["error"]["message"]
    assert fake.created_count() == before
