"""Artifact discovery on response JSON shapes, with a listing function standing in for a container."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import pytest

from shared.pipeline.discovery import decoded_size, find_artifacts, output_text, used_code_interpreter


def call(container_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "code_interpreter_call", "id": "ci_1", "container_id": container_id, **extra}


def message(*annotations: dict[str, Any], text: str = "done") -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": list(annotations)}],
    }


def cite(container_id: str, file_id: str, filename: str) -> dict[str, Any]:
    return {"type": "container_file_citation", "container_id": container_id, "file_id": file_id, "filename": filename}


def listing(files: dict[str, list[dict[str, Any]]]) -> Any:
    def list_files(container_id: str) -> Iterable[dict[str, Any]]:
        return files.get(container_id, [])

    return list_files


def test_real_name_wins_over_placeholder_whatever_the_order() -> None:
    response = {"output": [call("c1"), message(cite("c1", "f1", "f1.png"), cite("c1", "f1", "chart.png"))]}
    found = find_artifacts(response, listing({})).artifacts
    assert [(a.file_id, a.filename) for a in found] == [("f1", "chart.png")]


def test_placeholder_alone_is_kept() -> None:
    response = {"output": [message(cite("c1", "f1", "f1.png"))]}
    assert [a.filename for a in find_artifacts(response, listing({})).artifacts] == ["f1.png"]


def test_legacy_results_name_from_listing_or_mime_type() -> None:
    refs = [{"file_id": "f1", "mime_type": "image/png"}, {"file_id": "f2", "mime_type": "text/csv"}]
    files = [{"type": "files", "files": refs}]
    response = {"output": [call("c1", results=files), message()]}
    listed = {"c1": [{"id": "f1", "path": "/mnt/data/plot.png", "source": "assistant", "bytes": 10}]}
    found = {a.file_id: a for a in find_artifacts(response, listing(listed)).artifacts}
    assert found["f1"].filename == "plot.png" and found["f1"].size == 10
    assert found["f2"].filename == "f2.csv" and found["f2"].mime_type == "text/csv"


def test_user_files_are_never_taken_even_when_cited() -> None:
    response = {"output": [call("c1"), message(cite("c1", "u1", "input.xlsx"))]}
    listed = {
        "c1": [
            {"id": "u1", "path": "/mnt/data/input.xlsx", "source": "user"},
            {"id": "a1", "path": "/mnt/data/out.xlsx", "source": "assistant"},
        ]
    }
    assert [a.file_id for a in find_artifacts(response, listing(listed)).artifacts] == ["a1"]


def test_cited_file_without_source_in_listing_is_kept() -> None:
    response = {"output": [call("c1"), message(cite("c1", "f1", "a.txt"))]}
    listed = {"c1": [{"id": "f1", "path": "/mnt/data/a.txt"}, {"id": "f2", "path": "/mnt/data/b.txt"}]}
    assert [a.file_id for a in find_artifacts(response, listing(listed)).artifacts] == ["f1"]


def test_listing_failure_keeps_cited_files_and_warns() -> None:
    def broken(container_id: str) -> Iterable[dict[str, Any]]:
        raise RuntimeError("boom")

    response = {"output": [call("c1"), message(cite("c1", "f1", "a.txt"))]}
    discovery = find_artifacts(response, broken)
    assert [a.file_id for a in discovery.artifacts] == ["f1"]
    assert discovery.warnings == [{"container_id": "c1", "problem": "could not list files: boom"}]


def test_pages_read_before_a_listing_failure_are_kept() -> None:
    def fails_on_page_two(container_id: str) -> Iterable[dict[str, Any]]:
        yield {"id": "a1", "path": "/mnt/data/a.txt", "source": "assistant"}
        raise RuntimeError("page 2 failed")

    discovery = find_artifacts({"output": [call("c1")]}, fails_on_page_two)
    assert [a.file_id for a in discovery.artifacts] == ["a1"]
    assert discovery.warnings[0]["container_id"] == "c1"


def test_malformed_ids_are_ignored_and_nothing_is_listed_for_them() -> None:
    asked: list[str] = []

    def list_files(container_id: str) -> Iterable[dict[str, Any]]:
        asked.append(container_id)
        return []

    response = {"output": [call("../c1"), message(cite("c1/x", "f1", "a.txt"), cite("c2", "f 2", "b.txt"))]}
    assert find_artifacts(response, list_files).artifacts == []
    assert asked == []


def test_duplicates_across_sources_collapse() -> None:
    response = {"output": [call("c1"), message(cite("c1", "f1", "a.txt"), cite("c1", "f1", "a.txt"))]}
    listed = {"c1": [{"id": "f1", "path": "/mnt/data/a.txt", "source": "assistant"}]}
    assert len(find_artifacts(response, listing(listed)).artifacts) == 1


def test_output_text_joins_message_parts() -> None:
    response = {"output": [call("c1"), message(text="a"), message(text="b")]}
    assert output_text(response) == "ab"


LONG_CSV = "x" * 300 + ".csv"


def test_a_long_name_keeps_its_extension_in_the_one_stored_name() -> None:
    """The defect: the name was cut to 255 characters first, so the 200-byte cut lost ``.csv``."""
    response = {"output": [call("c1"), message(cite("c1", "f1", LONG_CSV))]}
    (found,) = find_artifacts(response, listing({})).artifacts
    assert found.filename.endswith(".csv")
    assert len(found.filename.encode("utf-8")) <= 200
    assert found.filename == "x" * 196 + ".csv"


def test_hostile_listed_names_become_the_stored_name() -> None:
    listed = {"c1": [{"id": "f1", "path": "/mnt/data/a\u202egnp.exe.", "source": "assistant"}]}
    (found,) = find_artifacts({"output": [call("c1")]}, listing(listed)).artifacts
    assert found.filename == "a_gnp.exe"


def shell_call(container_id: str | None, *, environment_type: str = "container_reference") -> dict[str, Any]:
    """The hosted shell tool's call, as the openai SDK's ResponseFunctionShellToolCall types it."""
    environment: dict[str, Any] = {"type": environment_type}
    if container_id is not None:
        environment["container_id"] = container_id
    return {
        "type": "shell_call", "id": "sh_1", "call_id": "call_1", "status": "completed",
        "action": {"commands": ["python make.py"]}, "environment": environment,
    }


def test_the_hosted_shell_tools_container_is_listed() -> None:
    response = {"created_at": 100, "output": [
        shell_call("cs1"),
        {"type": "shell_call_output", "id": "sho_1", "call_id": "call_1", "status": "completed", "output": []},
        message(),
    ]}
    listed = {"cs1": [
        {"id": "f1", "path": "/mnt/data/report.pdf", "source": "assistant", "bytes": 7, "created_at": 101},
        {"id": "f0", "path": "/mnt/data/old.pdf", "source": "assistant", "created_at": 99},  # an earlier turn's
        {"id": "u1", "path": "/mnt/data/in.csv", "source": "user", "created_at": 101},
    ]}
    found = find_artifacts(response, listing(listed)).artifacts
    assert [(a.container_id, a.file_id, a.filename, a.size) for a in found] == [("cs1", "f1", "report.pdf", 7)]


def test_every_tools_container_is_listed_once_in_first_seen_order() -> None:
    response = {"output": [
        call("c1"),
        shell_call("cs1"),
        shell_call(None, environment_type="local"),  # a local shell: no container
        {"type": "future_tool_call", "id": "x_1", "container_id": "cx1"},
        shell_call("c1"),
        message(cite("cc1", "f9", "cited.txt")),
    ]}
    asked: list[str] = []

    def list_files(container_id: str) -> Iterable[dict[str, Any]]:
        asked.append(container_id)
        return [{"id": f"f_{container_id}", "path": f"/mnt/data/{container_id}.txt", "source": "assistant"}]

    found = find_artifacts(response, list_files).artifacts
    assert asked == ["c1", "cs1", "cx1", "cc1"]
    assert {a.file_id for a in found} == {"f_c1", "f_cs1", "f_cx1", "f_cc1", "f9"}


def test_a_malformed_shell_environment_names_no_container() -> None:
    response = {"output": [shell_call("../evil"), {"type": "shell_call", "environment": "cntr_1"}]}
    asked: list[str] = []

    def list_files(container_id: str) -> Iterable[dict[str, Any]]:
        asked.append(container_id)
        return []

    find_artifacts(response, list_files)
    assert asked == []
    assert used_code_interpreter({"output": [shell_call("cs1")]})
    assert not used_code_interpreter({"output": [shell_call(None, environment_type="local")]})


def image_call(call_id: str, result: str | None, **extra: Any) -> dict[str, Any]:
    return {"type": "image_generation_call", "id": call_id, "status": "completed", "result": result, **extra}


def test_generated_images_are_artifacts_named_from_the_call_and_the_format() -> None:
    png, webp = base64.b64encode(b"\x89PNG1234").decode(), base64.b64encode(b"RIFFWEBP!").decode()
    response = {
        "tools": [{"type": "code_interpreter"}, {"type": "image_generation", "output_format": "webp"}],
        "output": [
            image_call("ig_1", png, output_format="png"),
            image_call("ig_2", webp),  # no output_format on the item: the tool's
            image_call("ig_3", None, status="failed"),  # no result: nothing to persist
            image_call("../ig", png),  # a malformed id is never a blob name
            image_call("ig_1", png, output_format="png"),  # the same call twice: one artifact
            message(),
        ],
    }
    found = find_artifacts(response, listing({})).artifacts
    assert [(a.container_id, a.file_id, a.filename, a.mime_type, a.size, a.source) for a in found] == [
        (None, "ig_1", "ig_1.png", "image/png", 8, "image_generation"),
        (None, "ig_2", "ig_2.webp", "image/webp", 9, "image_generation"),
    ]
    assert used_code_interpreter({"output": [image_call("ig_1", png)]})


def test_an_image_without_any_format_is_png_and_counts_toward_the_file_cap() -> None:
    response = {"output": [call("c1"), image_call("ig_9", "AAAA", output_format="bmp")]}
    listed = {"c1": [{"id": f"f{i}", "path": f"/mnt/data/{i}.txt", "source": "assistant"} for i in range(2)]}
    every = find_artifacts(response, listing(listed)).artifacts
    assert [a.filename for a in every] == ["0.txt", "1.txt", "ig_9.png"]
    assert every[-1].size == 3
    capped = find_artifacts(response, listing(listed), max_files=2)
    assert [a.filename for a in capped.artifacts] == ["0.txt", "1.txt"]
    assert capped.warnings


@pytest.mark.parametrize("text", ["", "QQ==", "QUI=", "QUJD", "QUJDRA=="])
def test_decoded_size_without_decoding(text: str) -> None:
    assert decoded_size(text) == len(base64.b64decode(text))
