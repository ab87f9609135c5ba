"""From an ended response to one artifact message per file not yet persisted."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator
from typing import Any

from shared.pipeline.discovery import find_artifacts
from shared.runtime import Runtime
from shared.storage.messages import ArtifactMessage
from shared.storage.naming import blob_name


def artifact_messages(
    runtime: Runtime, response: dict[str, Any], input_file_ids: Iterable[str], *, deadline: float
) -> tuple[list[ArtifactMessage], list[dict[str, str]]]:
    """The run's files as artifact messages, and the warnings of any listing that failed or ran out of time."""
    response_id = str(response["id"])

    def list_files(container_id: str) -> Iterator[dict[str, Any]]:
        if deadline - time.monotonic() <= 0:
            raise TimeoutError("no time left to list the container")
        return runtime.openai.list_container_files(container_id, deadline=deadline)

    discovery = find_artifacts(
        response, list_files, exclude_file_ids=input_file_ids, max_files=runtime.settings.max_files_per_run
    )
    messages = [
        ArtifactMessage(
            response_id=response_id,
            container_id=artifact.container_id,
            file_id=artifact.file_id,
            filename=artifact.filename,
            blob_name=blob_name(response_id, artifact.file_id, artifact.filename),  # the one stored name
            mime_type=artifact.mime_type,
            size=artifact.size,
            source=artifact.source,
        )
        for artifact in discovery.artifacts
    ]
    return messages, list(discovery.warnings)


def fan_out(runtime: Runtime, messages: list[ArtifactMessage], *, generation: int) -> int:
    """Queue every artifact not persisted yet; from the second generation on (an import, a repair),
    failed ones again too.

    Each message carries how many were queued and the generation: the delivery that settles the
    last of them wakes the watcher, counted in the generation's settle log, opened here once per
    run. Returns how many were queued.
    """
    if not messages:
        return 0
    response_id = messages[0].response_id
    persisted = runtime.artifact_blobs.artifacts_of(response_id)
    todo = [message for message in messages if message.file_id not in persisted]
    if generation > 1:
        failed = runtime.status_records.failures(response_id)
        for message in todo:
            if message.file_id in failed:
                runtime.status_records.clear_failure(response_id, message.file_id)
    if not todo:
        return 0
    runtime.status_records.open_settle_log(response_id, generation)
    counted = [dataclasses.replace(message, queued=len(todo), generation=generation) for message in todo]
    runtime.queues.send_many(runtime.settings.queues.artifacts, [message.to_json() for message in counted])
    return len(todo)
