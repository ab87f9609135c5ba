"""Error answers of the fake, shaped as Azure OpenAI shapes them."""

from __future__ import annotations

from typing import Any


class FakeApiError(Exception):
    """An error answer, raised anywhere below a route and sent by the handler (and by the
    in-process helpers, for a request the route would refuse)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


def azure_error(status: int, code: str, message: str) -> FakeApiError:
    return FakeApiError(status, {"error": {"code": code, "message": message}})


def invalid_request(message: str, param: str | None, code: str | None = "invalid_value") -> FakeApiError:
    return FakeApiError(
        400,
        {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}},
    )


def not_found() -> FakeApiError:
    return azure_error(404, "404", "Resource not found")


def object_not_found(message: str) -> FakeApiError:
    """A 404 for an id the route does not know, as the v1 routes word it."""
    return FakeApiError(
        404, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    )
