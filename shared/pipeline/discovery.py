"""Find every file a Responses API run produced, as (container id, file id, best filename).

Sources, merged and deduplicated by (container_id, file_id):
1. ``container_file_citation`` annotations on ``output_text`` content;
2. the 2025 preview shape: ``code_interpreter_call.results[].files[]`` (no annotations);
3. each container's file listing, for files the run wrote but did not cite
   (``source == "assistant"``; the caller's own ``source == "user"`` files are never taken).
   A container reused across turns (``previous_response_id``) lists the earlier turns' files
   too: a listed file created before this response is theirs, not this run's.
Container ids come from every output item that names one (a run may use several): the code
interpreter's ``code_interpreter_call`` (``container_id``), the hosted shell tool's ``shell_call``
(``environment: {"type": "container_reference", "container_id": ...}``; a ``local`` environment
names none), any other tool item with a top-level ``container_id``, and citations. Every container
is listed and filtered by the same rules.

4. ``image_generation_call`` items with a ``result`` (the image, base64): each is an artifact of its
   own (``source`` ``image_generation``, no container), named ``{call id}.{output format}`` (the item's
   ``output_format``, else the request's image_generation tool's, else png). The bytes stay in the
   response: the persist step reads the response again and decodes the item's result.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.ids import is_valid_id
from shared.json_values import json_int
from shared.storage.messages import SOURCE_CONTAINER, SOURCE_IMAGE_GENERATION
from shared.storage.naming import display_name, extension_for, is_placeholder_name, valid_mime_type

log = logging.getLogger(__name__)

ListFiles = Callable[[str], Iterable[dict[str, Any]]]
_IMAGE_FORMATS = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg", "gif": "image/gif",
                  "svg": "image/svg+xml"}  # the SDK's ImageGenerationCall.output_format values
_LISTING_SLACK = 100  # listed entries beyond the file cap: the caller's own inputs are listed too
_MAX_CONTAINERS = 20  # each gets a listing and perhaps a warning: both stay bounded


@dataclass
class Artifact:
    container_id: str | None  # None: not a container file (a generated image)
    file_id: str  # the container file id, or the image_generation_call's id
    filename: str
    mime_type: str | None = None
    size: int | None = None  # as the container listing reports it, or the decoded image's
    source: str = SOURCE_CONTAINER  # one of messages.SOURCES


@dataclass
class Discovery:
    artifacts: list[Artifact]
    # Containers whose listing failed: their uncited files may be missing, and the caller is told.
    warnings: list[dict[str, str]] = field(default_factory=list)


@dataclass
class _Candidate:
    container_id: str
    file_id: str
    names: list[str] = field(default_factory=list)
    mime_type: str | None = None
    size: int | None = None

    def best_name(self) -> str:
        real = [n for n in self.names if n and not is_placeholder_name(n, self.file_id)]
        if real:
            return real[0]
        if self.names:
            return self.names[0]
        return self.file_id + extension_for(self.mime_type)


class _Collector:
    """Candidates in first-seen order, and the containers they came from."""

    def __init__(self) -> None:
        self.candidates: dict[tuple[str, str], _Candidate] = {}
        self.containers: dict[str, None] = {}  # an insertion-ordered set
        self.user_files: set[str] = set()

    def container(self, container_id: Any) -> None:
        if is_valid_id(container_id):
            self.containers.setdefault(container_id)

    def file(self, container_id: Any, file_id: Any) -> _Candidate | None:
        if not is_valid_id(container_id) or not is_valid_id(file_id):
            log.warning("ignoring a file reference with a malformed id")
            return None
        self.containers.setdefault(container_id)
        key = (container_id, file_id)
        if key not in self.candidates:
            self.candidates[key] = _Candidate(container_id, file_id)
        return self.candidates[key]

    def from_call(self, item: dict[str, Any]) -> None:
        container_id = item.get("container_id")
        self.container(container_id)
        for result in _dicts(item.get("results")):
            if result.get("type") != "files":
                continue
            for ref in _dicts(result.get("files")):
                found = self.file(container_id, ref.get("file_id"))
                if found:
                    found.mime_type = valid_mime_type(ref.get("mime_type")) or found.mime_type

    def from_message(self, item: dict[str, Any]) -> None:
        for annotation in _citations(item):
            found = self.file(annotation.get("container_id"), annotation.get("file_id"))
            name = annotation.get("filename")
            if found and isinstance(name, str) and display_name(name):
                found.names.append(display_name(name))

    def from_listing(self, container_id: str, listed: Iterable[dict[str, Any]], created_after: int | None) -> None:
        for entry in listed:
            file_id = entry.get("id")
            source = entry.get("source")
            if source == "user" and isinstance(file_id, str):
                self.user_files.add(file_id)  # the caller's input: never persisted, even if cited
            if source != "assistant":
                continue
            if (container_id, file_id) not in self.candidates and _made_before(entry, created_after):
                continue  # an earlier turn's file in a reused container
            found = self.file(container_id, file_id)
            if found is None:
                continue
            path = entry.get("path")
            if isinstance(path, str) and display_name(path):
                found.names.append(display_name(path))
            if (size := json_int(entry.get("bytes"))) is not None:
                found.size = size


def find_artifacts(
    response: dict[str, Any],
    list_files: ListFiles,
    *,
    exclude_file_ids: Iterable[str] = (),
    max_files: int = 1000,
) -> Discovery:
    """Every file ``response`` produced, at most ``max_files`` (ARTIFACTS_MAX_FILES_PER_RUN: the
    run's messages, record and event stay bounded); ``list_files`` lists a container (may raise)."""
    created_after = json_int(response.get("created_at"))
    collector = _Collector()
    collector.user_files.update(exclude_file_ids)
    for item in _dicts(response.get("output")):
        if item.get("type") == "code_interpreter_call":
            collector.from_call(item)
        elif item.get("type") == "message":
            collector.from_message(item)
        else:
            for container_id in _named_containers(item):
                collector.container(container_id)

    warnings: list[dict[str, str]] = []
    for container_id in list(collector.containers)[:_MAX_CONTAINERS]:
        listed: list[dict[str, Any]] = []
        try:
            # Never more of a listing than could matter: a container of 50,000 files is 500 pages.
            listed.extend(itertools.islice(list_files(container_id), max_files + _LISTING_SLACK))
        except Exception as error:  # keep the pages already read, and the other containers
            log.warning("listing container %s failed: %s", container_id, error)
            warnings.append({"container_id": container_id, "problem": f"could not list files: {error}"})
        collector.from_listing(container_id, listed, created_after)

    if len(collector.containers) > _MAX_CONTAINERS:
        warnings.append({"problem": f"the run used more than {_MAX_CONTAINERS} containers; the rest were not listed"})
    artifacts = [
        Artifact(c.container_id, c.file_id, c.best_name(), c.mime_type, c.size)
        for c in collector.candidates.values()
        if c.file_id not in collector.user_files
    ]
    artifacts += _generated_images(response)
    if len(artifacts) > max_files:
        warnings.append({"problem": f"the run made more than {max_files} files; only the first {max_files} are "
                                    "persisted (ARTIFACTS_MAX_FILES_PER_RUN)"})
        artifacts = artifacts[:max_files]
    return Discovery(artifacts, warnings)


def used_code_interpreter(response: dict[str, Any]) -> bool:
    """Whether the run could have made files: a code interpreter call, any tool's container (the
    hosted shell's), a generated image, or a container file cited."""
    for item in _dicts(response.get("output")):
        if item.get("type") in ("code_interpreter_call", "image_generation_call"):
            return True
        if any(True for _ in _named_containers(item)):
            return True
        if item.get("type") == "message" and any(True for _ in _citations(item)):
            return True
    return False


def output_text(response: dict[str, Any]) -> str:
    """The concatenated ``output_text`` parts of the response's messages (as the SDKs compute it)."""
    parts: list[str] = []
    for item in _dicts(response.get("output")):
        if item.get("type") != "message":
            continue
        for content in _dicts(item.get("content")):
            if content.get("type") == "output_text" and isinstance(content.get("text"), str):
                parts.append(content["text"])
    return "".join(parts)


def _generated_images(response: dict[str, Any]) -> list[Artifact]:
    """Each image_generation_call with a result, once per call id."""
    default = _tool_output_format(response)
    found: dict[str, Artifact] = {}
    for item in _dicts(response.get("output")):
        result = item.get("result")
        call_id = item.get("id")
        if item.get("type") != "image_generation_call" or not isinstance(result, str) or not result:
            continue
        if not is_valid_id(call_id) or call_id in found:
            continue
        output_format = item.get("output_format")
        if output_format not in _IMAGE_FORMATS:
            output_format = default
        name = display_name(f"{call_id}.{output_format}", call_id)
        found[call_id] = Artifact(None, call_id, name, _IMAGE_FORMATS[output_format],
                                  decoded_size(result), source=SOURCE_IMAGE_GENERATION)
    return list(found.values())


def _tool_output_format(response: dict[str, Any]) -> str:
    """The output format the request's image_generation tool asked for, else png (the API's default)."""
    for tool in _dicts(response.get("tools")):
        if tool.get("type") == "image_generation" and tool.get("output_format") in _IMAGE_FORMATS:
            return str(tool["output_format"])
    return "png"


def decoded_size(base64_text: str) -> int | None:
    """The bytes a base64 text decodes to, without decoding it (None unless it is plain padded base64)."""
    if len(base64_text) % 4:
        return None
    return len(base64_text) // 4 * 3 - len(base64_text[-2:]) + len(base64_text[-2:].rstrip("="))


def _named_containers(item: dict[str, Any]) -> Iterator[str]:
    """The containers an output item names: its own ``container_id`` (code interpreter and other
    hosted tools), or a ``container_reference`` environment (the hosted shell tool's ``shell_call``)."""
    if is_valid_id(item.get("container_id")):
        yield item["container_id"]
    environment = item.get("environment")
    if (
        isinstance(environment, dict)
        and environment.get("type") == "container_reference"
        and is_valid_id(environment.get("container_id"))
    ):
        yield environment["container_id"]


def _made_before(entry: dict[str, Any], moment: int | None) -> bool:
    created = json_int(entry.get("created_at"))
    return moment is not None and created is not None and created < moment


def _citations(message: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for content in _dicts(message.get("content")):
        for annotation in _dicts(content.get("annotations")):
            if annotation.get("type") == "container_file_citation":
                yield annotation


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        yield from (entry for entry in value if isinstance(entry, dict))
