"""The whole flow, as the host runs it: POST -> run watcher -> artifact messages -> blobs.

Every test checks what ends up in Azurite: bytes, metadata, content settings.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from urllib.parse import quote, unquote

import pytest

from tests.conftest import API_KEY, DEPLOYMENT, AppEnv
from tests.fake_openai import FakeAzureOpenAI, FakeContainer, FakeFile, Scenario
from tests.support.flow import start_and_discover, status
from tests.support.host import FunctionsHost

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)
run = start_and_discover


def stored(env: AppEnv, blob_name: str) -> tuple[bytes, dict[str, str], str | None, str | None]:
    blob = env.artifacts().get_blob_client(blob_name)
    properties = blob.get_blob_properties()
    data = blob.download_blob().readall()
    content = properties.content_settings
    return data, dict(properties.metadata), content.content_type, content.content_disposition


def assert_landed(env: AppEnv, response_id: str, file: FakeFile, container_id: str, name: str) -> None:
    blob_name = f"{response_id}/{file.file_id}/{name}"
    data, metadata, content_type, disposition = stored(env, blob_name)
    assert data == file.content
    assert metadata["response_id"] == response_id
    assert metadata["container_id"] == container_id
    assert metadata["file_id"] == file.file_id
    assert unquote(metadata["filename"]) == name
    assert metadata["size"] == str(len(file.content))
    assert metadata["sha256"] == hashlib.sha256(file.content).hexdigest()
    assert metadata["downloaded_at"].endswith("Z")
    assert disposition is not None and f"filename*=UTF-8''{quote(name, safe='')}" in disposition
    assert content_type


def blob_names(env: AppEnv) -> set[str]:
    container = env.artifacts()
    return {b.name for b in container.list_blobs()} if container.exists() else set()


def record_names(env: AppEnv) -> list[str]:
    container = env.status()
    return [b.name for b in container.list_blobs()] if container.exists() else []


def test_cited_uncited_and_user_files(host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv) -> None:
    chart = FakeFile(PNG, "/mnt/data/sales chart.png", cite="both")
    table = FakeFile(b"region,total\nnorth,10\nsouth,12\n", "/mnt/data/totals.csv", cite="placeholder")
    notes = FakeFile(b"# Summary\nAll good.\n", "/mnt/data/summary.md", cite=None)
    user = FakeFile(b"caller's own data", "/mnt/data/input.xlsx", source="user", cite=None)
    scenario = Scenario([FakeContainer([chart, table, notes, user])])

    answer = run(host, fake, scenario, file_ids=["assistant-abc123"], instructions="Be brief.")
    container_id = scenario.containers[0].container_id
    response_id = answer["response_id"]
    assert answer["status"] == "completed"
    assert answer["output_text"].startswith("Here are your files.")
    by_file = {a["file_id"]: a for a in answer["artifacts"]}
    assert set(by_file) == {chart.file_id, table.file_id, notes.file_id}
    assert by_file[chart.file_id]["filename"] == "sales chart.png"  # the real name beats the placeholder
    assert by_file[table.file_id]["filename"] == "totals.csv"  # the listing's path gives the real name
    assert all(a["container_id"] == container_id for a in answer["artifacts"])
    assert len(host.queue(app_env.queue).peek_messages(max_messages=32)) == 3

    sent = fake.last_response_body
    assert sent is not None
    assert sent["model"] == DEPLOYMENT
    assert sent["instructions"] == "Be brief."
    assert sent["include"] == ["code_interpreter_call.outputs"]
    assert sent["background"] is True
    assert sent["store"] is True
    assert sent["tools"] == [
        {"type": "code_interpreter", "container": {"type": "auto", "file_ids": ["assistant-abc123"]}}
    ]

    deliveries = host.deliver("persist_artifact")
    assert [d.error for d in deliveries] == [None, None, None]
    assert blob_names(app_env) == {a["blob_name"] for a in answer["artifacts"]}
    assert_landed(app_env, response_id, chart, container_id, "sales chart.png")
    assert_landed(app_env, response_id, table, container_id, "totals.csv")
    assert_landed(app_env, response_id, notes, container_id, "summary.md")
    assert stored(app_env, by_file[chart.file_id]["blob_name"])[2] == "image/png"
    assert stored(app_env, by_file[table.file_id]["blob_name"])[2] == "text/csv"


def test_legacy_results_shape(host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv) -> None:
    chart = FakeFile(PNG, "/mnt/data/legacy.png", cite=None)
    scenario = Scenario([FakeContainer([chart], legacy_results=True)])
    answer = run(host, fake, scenario)
    assert [a["file_id"] for a in answer["artifacts"]] == [chart.file_id]
    assert answer["artifacts"][0]["filename"] == "legacy.png"
    assert all(d.error is None for d in host.deliver("persist_artifact"))
    assert_landed(app_env, answer["response_id"], chart, scenario.containers[0].container_id, "legacy.png")


def test_several_containers_and_pages(host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv) -> None:
    first = [FakeFile(f"first {i}".encode(), f"/mnt/data/a{i}.txt", cite=None) for i in range(5)]
    second = [FakeFile(b"x" * 10, "/mnt/data/b.txt", cite="real")]
    scenario = Scenario([FakeContainer(first), FakeContainer(second)])
    answer = run(host, fake, scenario)
    assert len(answer["artifacts"]) == 6  # five of them across three pages of the listing
    assert len({a["container_id"] for a in answer["artifacts"]}) == 2
    assert all(d.error is None for d in host.deliver("persist_artifact"))
    for file in first:
        name = file.path.rsplit("/", 1)[1]
        assert_landed(app_env, answer["response_id"], file, scenario.containers[0].container_id, name)
    assert_landed(app_env, answer["response_id"], second[0], scenario.containers[1].container_id, "b.txt")


def test_non_ascii_name_round_trips(host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv) -> None:
    chart = FakeFile(PNG, "/mnt/data/銷售圖表.png", cite="real")
    answer = run(host, fake, Scenario([FakeContainer([chart])]))
    assert answer["artifacts"][0]["filename"] == "銷售圖表.png"
    assert answer["artifacts"][0]["blob_name"].endswith("/銷售圖表.png")
    host.deliver("persist_artifact")
    data, metadata, content_type, disposition = stored(app_env, answer["artifacts"][0]["blob_name"])
    assert data == chart.content
    assert metadata["filename"] == "%E9%8A%B7%E5%94%AE%E5%9C%96%E8%A1%A8.png"
    assert metadata["filename"].isascii()
    assert content_type == "image/png"
    assert disposition == 'attachment; filename="____.png"; filename*=UTF-8\'\'%E9%8A%B7%E5%94%AE%E5%9C%96%E8%A1%A8.png'


def test_large_file_streams_in_blocks(host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv) -> None:
    big = FakeFile(os.urandom(9 * 1024 * 1024 + 123), "/mnt/data/big.bin", cite="real")
    answer = run(host, fake, Scenario([FakeContainer([big])]))
    assert all(d.error is None for d in host.deliver("persist_artifact"))
    assert_landed(app_env, answer["response_id"], big, answer["artifacts"][0]["container_id"], "big.bin")
    blob = app_env.artifacts().get_blob_client(answer["artifacts"][0]["blob_name"])
    committed, _ = blob.get_block_list("all")
    assert len(committed) == 3  # 4 MiB blocks: the file never sat whole in one request


def test_download_follows_the_endpoint_rules(host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv) -> None:
    chart = FakeFile(PNG, "/mnt/data/rules.png", cite="real")
    answer = run(host, fake, Scenario([FakeContainer([chart])]))
    before = len(fake.requests)
    host.deliver("persist_artifact")
    downloads = [r for r in fake.requests[before:] if r.path.endswith("/content")]
    assert len(downloads) == 1
    request = downloads[0]
    cid = answer["artifacts"][0]["container_id"]
    assert request.path == f"/openai/v1/containers/{cid}/files/{chart.file_id}/content"
    assert request.query == {"api-version": "preview"}
    assert request.headers["api-key"] == API_KEY
    assert "authorization" not in request.headers
    assert not any(r.path.startswith("/openai/files") for r in fake.requests)


def test_second_delivery_is_cheap_and_leaves_one_blob(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    chart = FakeFile(PNG, "/mnt/data/once.png", cite="real")
    run(host, fake, Scenario([FakeContainer([chart])]))
    message = base64.b64decode(host.queue(app_env.queue).peek_messages()[0].content).decode()
    host.deliver("persist_artifact")
    before = len(fake.requests)
    host.queue(app_env.queue).send_message(base64.b64encode(message.encode()).decode())
    assert [d.error for d in host.deliver("persist_artifact")] == [None]
    assert not any(r.path.endswith("/content") for r in fake.requests[before:])
    assert len(blob_names(app_env)) == 1


def test_expired_container_is_recorded_not_retried(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    chart = FakeFile(PNG, "/mnt/data/late.png", cite="real")
    scenario = Scenario([FakeContainer([chart])])
    answer = run(host, fake, scenario)
    fake.expire(scenario.containers[0].container_id)
    deliveries = host.deliver("persist_artifact")
    assert [d.error for d in deliveries] == [None]  # completed: no retry storm
    assert blob_names(app_env) == set()
    record = json.loads(
        app_env.status()
        .get_blob_client(f"{answer['response_id']}/{chart.file_id}.json")
        .download_blob()
        .readall()
    )
    assert record["state"] == "failed"
    assert record["code"] == "file_gone"
    assert "expired" in record["reason"].lower()
    assert record["blob_name"] == answer["artifacts"][0]["blob_name"]


def test_body_cut_mid_stream_is_retried_and_lands_whole(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    big = FakeFile(os.urandom(6 * 1024 * 1024), "/mnt/data/cut.bin", cite="real")
    answer = run(host, fake, Scenario([FakeContainer([big])]))
    fake.cut_next_download(after_bytes=5 * 1024 * 1024)
    assert [d.error for d in host.deliver("persist_artifact")] == [None]
    assert_landed(app_env, answer["response_id"], big, answer["artifacts"][0]["container_id"], "cut.bin")


def test_unusable_message_is_recorded(host: FunctionsHost, app_env: AppEnv) -> None:
    host.queue(app_env.queue).send_message(base64.b64encode(b'{"v": 1, "file_id": "../x"}').decode())
    assert [d.error for d in host.deliver("persist_artifact")] == [None]
    records = record_names(app_env)
    assert len(records) == 1
    assert records[0].startswith("_invalid/")
    assert blob_names(app_env) == set()


@pytest.mark.parametrize("code", [401, 500])
def test_transient_download_failure_leaves_the_message_for_redelivery(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv, code: int
) -> None:
    chart = FakeFile(PNG, "/mnt/data/retry.png", cite="real")
    response_id = run(host, fake, Scenario([FakeContainer([chart])]))["response_id"]
    # Enough failures for every in-process attempt of one delivery.
    fake.fail_next("/content", code, {"error": {"code": str(code), "message": "nope"}}, times=4)
    first = host.deliver("persist_artifact", max_rounds=1)
    assert len(first) == 1 and first[0].error is not None
    assert blob_names(app_env) == set()
    progress = status(host, response_id)
    assert [a["state"] for a in progress["artifacts"]] == ["pending"]  # not failed for good: the host retries


def test_the_hosted_shell_tools_container_is_persisted_by_the_same_rules(
    host: FunctionsHost, fake: FakeAzureOpenAI, app_env: AppEnv
) -> None:
    report = FakeFile(b"%PDF-1.4 shell made me\n", "/mnt/data/report.pdf", cite=None)
    user = FakeFile(b"the caller's data", "/mnt/data/in.csv", source="user", cite=None)
    shell = FakeContainer([report, user], tool="shell")
    answer = run(host, fake, Scenario([shell]))
    assert [(a["file_id"], a["filename"], a["container_id"]) for a in answer["artifacts"]] == [
        (report.file_id, "report.pdf", shell.container_id)
    ]
    assert all(d.error is None for d in host.deliver("persist_artifact"))
    assert_landed(app_env, answer["response_id"], report, shell.container_id, "report.pdf")
    assert blob_names(app_env) == {f"{answer['response_id']}/{report.file_id}/report.pdf"}
