"""JSON answers for the HTTP function: every answer, error or not, is a JSON object."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func


def json_response(status: int, body: dict[str, Any]) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        mimetype="application/json",
        charset="utf-8",
    )


def error_response(status: int, code: str, message: str, **extra: Any) -> func.HttpResponse:
    return json_response(status, {"error": {"code": code, "message": message, **extra}})
