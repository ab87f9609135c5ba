"""The run's uploaded inputs (``input_blobs``), deleted from Azure OpenAI once the run has ended.

At least once: every watcher step after the run ended tries the inputs not yet deleted (the step
that saw it end, each look at the artifacts, the completing step), and a POST whose create failed
tries them at once. A delete is idempotent: 404 means already gone. A failure is logged and tried
again at the next step; it never holds up a step or the completion event. Whatever is still not
deleted when the run completes stays listed in the status (``deleted: false``) with a warning.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
from azure.core.exceptions import ClientAuthenticationError

from shared.errors import UpstreamError
from shared.openai_client import AzureOpenAIClient

log = logging.getLogger(__name__)
_DELETE_SECONDS = 10.0  # one delete's bound: a step has other work
INPUTS_NOT_DELETED = "inputs_not_deleted"


def delete_inputs(openai: AzureOpenAIClient, inputs: list[dict[str, Any]], response_id: str | None) -> int:
    """Delete each uploaded input not yet deleted, marking it ``deleted``; how many remain."""
    remaining = 0
    for entry in inputs:
        file_id = entry.get("file_id")
        if entry.get("deleted") or not isinstance(file_id, str):
            continue
        try:
            openai.delete_file(file_id, deadline=time.monotonic() + _DELETE_SECONDS)
        except (UpstreamError, httpx.TransportError, ClientAuthenticationError, ValueError) as error:
            remaining += 1
            log.warning("run %s: could not delete the uploaded input %s (%s); tried again at the next step",
                        response_id, file_id, type(error).__name__)
            continue
        entry["deleted"] = True
    return remaining


def not_deleted_warning(inputs: list[dict[str, Any]]) -> dict[str, str] | None:
    left = [str(entry.get("file_id")) for entry in inputs if not entry.get("deleted")]
    if not left:
        return None
    return {"code": INPUTS_NOT_DELETED,
            "problem": f"{len(left)} uploaded input file(s) could not be deleted from Azure OpenAI: {', '.join(left)}"}
