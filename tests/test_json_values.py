"""Untrusted JSON nested without end is refused as bad input, never raised as RecursionError."""

from __future__ import annotations

import pytest

from shared.api.run_request import parse_run_request
from shared.errors import InvalidMessage, InvalidRequest
from shared.json_values import MAX_JSON_DEPTH, parse_json
from shared.storage.messages import ArtifactMessage, WatchMessage

pytestmark = pytest.mark.unit

NESTED = {  # what json.loads cannot parse (RecursionError), and what it parses but code may not walk
    "beyond the parser": b"[" * 100_000 + b"]" * 100_000,
    "beyond the limit": b'{"a": ' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1),
}


@pytest.mark.parametrize("case", sorted(NESTED))
def test_parse_json_refuses_deep_nesting_as_a_value_error(case: str) -> None:
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
        parse_json(NESTED[case])


def test_the_limit_is_a_limit_not_a_guess() -> None:
    assert parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
    assert parse_json(b'{"input": [{"content": [{"type": "input_text", "text": "x"}]}]}')["input"]


@pytest.mark.parametrize("case", sorted(NESTED))
def test_a_nested_request_body_is_a_400_naming_the_body(case: str) -> None:
    body = b'{"input": ' + NESTED[case] + b"}"
    with pytest.raises(InvalidRequest) as invalid:
        parse_run_request(body)
    assert invalid.value.status == 400
    assert [(p.field, p.problem) for p in invalid.value.problems] == [
        ("body", f"is nested deeper than {MAX_JSON_DEPTH} levels")
    ]


@pytest.mark.parametrize("message", [WatchMessage, ArtifactMessage])
@pytest.mark.parametrize("case", sorted(NESTED))
def test_a_nested_queue_message_is_invalid_not_a_crash(
    message: type[WatchMessage | ArtifactMessage], case: str
) -> None:
    body = b'{"v": 1, "response_id": ' + NESTED[case][:40_000] + b"}"
    with pytest.raises(InvalidMessage, match=r"nested deeper|not valid JSON"):
        message.from_json(body)
