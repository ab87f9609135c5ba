"""The POST's ``image_generation`` field: checked, and turned into the Responses API's tool."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.api.run_request import parse_run_request
from shared.errors import InvalidRequest


def payload(**fields: Any) -> dict[str, Any]:
    return parse_run_request(json.dumps({"input": "draw", **fields})).to_payload("gpt", background=True)


def test_the_tool_is_added_beside_the_code_interpreter() -> None:
    assert [t["type"] for t in payload()["tools"]] == ["code_interpreter"]
    assert [t["type"] for t in payload(image_generation=False)["tools"]] == ["code_interpreter"]
    assert [t["type"] for t in payload(image_generation=None)["tools"]] == ["code_interpreter"]
    assert payload(image_generation=True)["tools"][1] == {"type": "image_generation"}
    options = {"output_format": "jpeg", "quality": "low", "size": "1024x1024", "output_compression": 80}
    assert payload(image_generation=options)["tools"][1] == {"type": "image_generation", **options}


@pytest.mark.parametrize(
    "value",
    ["yes", 1, [], {"type": "web_search"}, {"output_format": "bmp"}, {"quality": {"nested": 1}},
     {"size": "x" * 65}, {"k" * 65: "v"}],
)
def test_a_bad_image_generation_is_a_400_naming_the_field(value: object) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_run_request(json.dumps({"input": "draw", "image_generation": value}))
    assert [p.field for p in refused.value.problems] == ["image_generation"]
