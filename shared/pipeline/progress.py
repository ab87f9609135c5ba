"""Where each artifact of a run stands, read from Storage in a fixed number of requests.

Three sources, one request each whatever the run's size (bounded by the files per run): the
run record (which artifacts exist), one listing of the artifact blobs (a whole blob is the proof
of ``persisted``), one listing of the failure records (facts in their metadata). A blob beats a
failure record: a later delivery or a repair may succeed after a failure. A failure recorded
by an earlier generation's delivery after an import queued the file again does not count.
"""

from __future__ import annotations

from typing import Any

from shared.runtime import Runtime
from shared.storage.messages import SOURCE_CONTAINER
from shared.storage.run_records import RunRecord

STATES = ("pending", "persisted", "failed")


def artifact_states(runtime: Runtime, record: RunRecord) -> list[dict[str, Any]]:
    if not record.artifacts:
        return []
    stored = runtime.artifact_blobs.artifacts_of(record.response_id)
    failures = runtime.status_records.failures(record.response_id)
    states: list[dict[str, Any]] = []
    for artifact in record.artifacts:
        file_id = str(artifact.get("file_id"))
        entry = {key: artifact.get(key) for key in ("container_id", "file_id", "filename", "blob_name")}
        entry["source"] = artifact.get("source") or SOURCE_CONTAINER  # a record from before sources: a container file
        blob = stored.get(file_id)
        failure = _current(failures.get(file_id), record.generation)
        if blob is not None:
            entry.update(state="persisted", blob_name=blob.blob_name, size=blob.size, sha256=blob.sha256)
        elif failure is not None:
            entry.update(state="failed", **failure)
        else:
            entry["state"] = "pending"
        states.append(entry)
    return states


def _current(failure: dict[str, Any] | None, generation: int) -> dict[str, Any] | None:
    """A failure record, unless an earlier generation's delivery wrote it after an import had
    queued the file again (a late overlapping delivery): the current generation's own delivery
    of that file is still to end."""
    if failure is None:
        return None
    recorded_for = failure.pop("generation", None)
    return None if recorded_for is not None and recorded_for < generation else failure


def with_links(runtime: Runtime, states: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The states, each persisted artifact with a read-only download link that expires."""
    if runtime.links is None:
        return states
    linked = []
    for entry in states:
        if entry["state"] != "persisted":
            linked.append(entry)
            continue
        link = runtime.links.sign(str(entry["blob_name"]), str(entry.get("filename") or entry["file_id"]))
        expires = link.expires_at.isoformat().replace("+00:00", "Z")
        linked.append({**entry, "url": link.url, "url_expires_at": expires})
    return linked


def count_states(states: list[dict[str, Any]]) -> dict[str, int]:
    return {state: sum(1 for entry in states if entry["state"] == state) for state in STATES}
