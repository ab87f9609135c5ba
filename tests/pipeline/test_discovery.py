"""Artifact discovery on response JSON shapes, with a listing function standing in for a container."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.pipeline.discovery import find_artifacts, output_text


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
