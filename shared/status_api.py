"""``GET /api/responses/{response_id}``: where each artifact of a run stands.

Read from Storage on every call (the manifest, failure records and the blobs themselves),
never from process memory, so any instance answers the same.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func

from shared.config import ConfigError
from shared.http_json import error_response, json_response
from shared.ids import is_valid_id
from shared.runtime import get_runtime

log = logging.getLogger(__name__)


def response_status(req: func.HttpRequest) -> func.HttpResponse:
    response_id = req.route_params.get("response_id", "")
    if not is_valid_id(response_id):
        return error_response(
            400, "invalid_request", "response_id: must be letters, digits, '_' or '-'", field="response_id"
        )
    try:
        runtime = get_runtime()
    except ConfigError as error:
        log.error("%s", error)
        return error_response(500, "configuration_error", str(error))

    records = runtime.status.read(response_id)
    if records is None:
        return error_response(404, "not_found", f"no run with response_id {response_id!r} is known")
    stored = runtime.store.list_whole(f"{response_id}/")

    artifacts: list[dict[str, Any]] = []
    for artifact in records.manifest.get("artifacts", []):
        entry = {key: artifact.get(key) for key in ("container_id", "file_id", "filename", "blob_name")}
        blob = stored.get(str(artifact.get("blob_name")))
        failure = records.failures.get(str(artifact.get("file_id")))
        if blob is not None:  # a later delivery or a replay may succeed after a failure
            entry.update(state="persisted", size=blob.size, sha256=blob.sha256)
        elif failure is not None:
            entry.update(state="failed", code=failure.get("code"), reason=failure.get("reason"),
                         attempts=failure.get("attempts"), failed_at=failure.get("failed_at"))
        else:
            entry["state"] = "pending"
        artifacts.append(entry)

    counts = {state: sum(1 for a in artifacts if a["state"] == state) for state in ("pending", "persisted", "failed")}
    return json_response(
        200,
        {
            "response_id": response_id,
            "status": records.manifest.get("status"),
            "created_at": records.manifest.get("created_at"),
            "complete": counts["pending"] == 0,
            "counts": counts,
            "artifacts": artifacts,
        },
    )
