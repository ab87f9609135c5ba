"""``input_blobs``: the caller's blobs in the input container, streamed into Azure OpenAI's files
API before the run is created, their file ids then given to the code interpreter's container.

Each name was checked by ``run_request``; here each blob is looked up (with Easy Auth on, under the
caller's own prefix ``{owner}/``), its size checked against the limits, then read a piece at a time
and uploaded as it is read (``purpose=assistants``). When anything fails, what was uploaded is
deleted again and the caller gets a 4xx naming the blob (or a 502/503 from Azure OpenAI).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError

from shared.api.answers import UPSTREAM_FAILURES, upstream_refusal
from shared.api.callers import Caller
from shared.errors import Refusal
from shared.pipeline.input_cleanup import delete_inputs
from shared.runtime import Runtime
from shared.storage.input_blobs import InputBlob

log = logging.getLogger(__name__)


def _invalid(field: str, problem: str, status: int = 400) -> Refusal:
    return Refusal(status, "invalid_request", f"{field}: {problem}", field=field,
                   details=[{"field": field, "problem": problem}])


def check_inputs(runtime: Runtime, caller: Caller, names: tuple[str, ...]) -> list[InputBlob]:
    """Every named blob, found and within the limits; else a 4xx naming the first that is not."""
    if not names:
        return []
    store = runtime.inputs
    if store is None:
        raise _invalid("input_blobs", "this app reads no input blobs (ARTIFACTS_INPUT_CONTAINER is not set)")
    found: list[InputBlob] = []
    for index, name in enumerate(names):
        field = f"input_blobs[{index}]"
        try:
            blob = store.find(name, caller.owner)
        except AzureError as error:
            denied = isinstance(error, HttpResponseError) and error.status_code == 403
            log.error("could not read the input container: %s", type(error).__name__)
            raise Refusal(503, "input_storage_unavailable",
                          f"{field}: the input container could not be read"
                          + (" (the app's identity needs Storage Blob Data Reader on it)" if denied else
                             "; try again"), field=field) from None
        if blob is None:
            raise _invalid(field, "no such blob in the input container"
                           + (" (under your own prefix)" if caller.owner is not None else ""))
        if blob.size > runtime.settings.input_max_bytes:
            raise _invalid(field, f"larger than {runtime.settings.input_max_bytes} bytes (ARTIFACTS_INPUT_MAX_BYTES)",
                           413)
        found.append(blob)
    total = sum(blob.size for blob in found)
    if total > runtime.settings.input_max_total_bytes:
        raise _invalid("input_blobs", f"together larger than {runtime.settings.input_max_total_bytes} bytes "
                       "(ARTIFACTS_INPUT_MAX_TOTAL_BYTES)", 413)
    return found


def upload_inputs(runtime: Runtime, blobs: list[InputBlob], deadline: float) -> list[dict[str, Any]]:
    """Upload each blob, streamed; the run's input entries (name, file id, bytes, deleted).
    On a failure the uploads made are deleted and the failure raised as a Refusal."""
    store = runtime.inputs
    uploaded: list[dict[str, Any]] = []
    for index, blob in enumerate(blobs):
        if store is None or time.monotonic() > deadline:
            delete_inputs(runtime.openai, uploaded, None)
            raise Refusal(504, "input_upload_timeout", "input_blobs: the uploads took too long; try fewer or smaller",
                          field="input_blobs")
        filename = blob.name.rsplit("/", 1)[-1]
        try:
            answer = runtime.openai.upload_file(filename, store.chunks(blob), content_type=blob.content_type,
                                                deadline=deadline)
        except UPSTREAM_FAILURES as error:
            delete_inputs(runtime.openai, uploaded, None)
            raise upstream_refusal(error) from None
        except Exception as error:  # the blob changed or vanished while read
            delete_inputs(runtime.openai, uploaded, None)
            log.warning("could not read input blob %d: %s", index, type(error).__name__)
            raise _invalid(f"input_blobs[{index}]", "could not be read from the input container (changed or "
                           "deleted while uploading); try again", 409) from None
        uploaded.append({"name": blob.name, "file_id": str(answer["id"]), "bytes": blob.size, "deleted": False})
    return uploaded
