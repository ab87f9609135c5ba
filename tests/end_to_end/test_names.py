"""Names kept whole: the model's filename becomes one stored name, the same in the artifact message,
the blob, its metadata, the status API and the completion event (at most 200 UTF-8 bytes, the
extension kept, the content type from the last extension)."""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest

from tests.conftest import AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.fake_openai.server import CiteMode
from tests.support.flow import events, finished, post_run
from tests.support.host import FunctionsHost

CASES = [
    # (the model's path, the stored name, its content type)
    ("/mnt/data/" + "x" * 300 + ".csv", "x" * 196 + ".csv", "text/csv"),
    ("/mnt/data/" + "銷" * 100 + ".json", "銷" * 65 + ".json", "application/json"),
    ("/mnt/data/../..\\evil\u202egnp.md..", "evil_gnp.md", "text/markdown"),
    ("/mnt/data/tab\there\x07.txt", "tab_here_.txt", "text/plain"),
]


@pytest.mark.parametrize("cite", ["real", None])
def test_long_multibyte_and_hostile_names_are_one_name_everywhere(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, cite: CiteMode | None
) -> None:
    made = [FakeFile(f"file {i}\n".encode(), path, cite=cite) for i, (path, _, _) in enumerate(CASES)]
    response_id = post_run(host, fake, Scenario([FakeContainer(made)])).json()["response_id"]
    host.run_until(lambda: bool(host.peek(app_env.queue)), timeout=30, only=("watch_run",))
    queued = {m["file_id"]: m for m in (json.loads(text) for text in host.peek(app_env.queue))}
    final = finished(host, response_id)
    in_status = {a["file_id"]: a for a in final["artifacts"]}
    (event,) = events(host, app_env)
    in_event = {a["file_id"]: a for a in event["artifacts"]}

    for file, (_, name, content_type) in zip(made, CASES, strict=True):
        assert len(name.encode("utf-8")) <= 200
        blob = f"{response_id}/{file.file_id}/{name}"
        assert queued[file.file_id]["filename"] == name
        assert queued[file.file_id]["blob_name"] == blob
        properties = app_env.artifacts().get_blob_client(blob).get_blob_properties()
        assert unquote(properties.metadata["filename"]) == name
        assert properties.content_settings.content_type == content_type
        assert in_status[file.file_id]["filename"] == name
        assert in_status[file.file_id]["blob_name"] == blob
        assert in_status[file.file_id]["state"] == "persisted"
        assert in_event[file.file_id]["filename"] == name
        assert in_event[file.file_id]["blob_name"] == blob
