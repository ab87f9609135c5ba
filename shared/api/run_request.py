"""The body of ``POST /api/responses``: validated field by field before any call goes out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.errors import FieldProblem, InvalidRequest
from shared.ids import is_valid_id
from shared.json_values import is_json_number, json_int_in, parse_json
from shared.limits import MAX_INPUT_BLOB_NAME_CHARS, MAX_INPUT_BLOBS, MAX_WAIT_SECONDS

MAX_BODY_BYTES = 1024 * 1024
_TOOL_CHOICES = ("auto", "none", "required")
_METADATA_MAX_PAIRS, _METADATA_MAX_KEY, _METADATA_MAX_VALUE = 16, 64, 512
_MIN_OUTPUT_TOKENS = 16  # the Responses API rejects smaller values
IMAGE_FORMATS = ("png", "webp", "jpeg")  # the image_generation tool's output_format values
_IMAGE_OPTION_MAX_CHARS = 64


@dataclass(frozen=True)
class RunRequest:
    input: str | list[Any]
    model: str | None = None
    instructions: str | None = None
    file_ids: tuple[str, ...] = ()
    # Responses options passed through unchanged once validated.
    options: dict[str, Any] = field(default_factory=dict)
    wait_seconds: float = 0.0  # how long the caller is willing to wait for the run to end
    # The image_generation tool's options (``{}``: its defaults); None: the run has no such tool.
    image_generation: dict[str, Any] | None = None
    input_blobs: tuple[str, ...] = ()  # blob names in the input container (ARTIFACTS_INPUT_CONTAINER)

    def to_payload(self, default_model: str, *, background: bool) -> dict[str, Any]:
        """The Responses API request: the code interpreter in an auto container, outputs included.

        Always stored, so the run watcher can read the run back; in the background when allowed.
        """
        container: dict[str, Any] = {"type": "auto"}
        if self.file_ids:
            container["file_ids"] = list(self.file_ids)
        payload: dict[str, Any] = {
            "model": self.model or default_model,
            "input": self.input,
            "tools": [{"type": "code_interpreter", "container": container}, *self._image_tool()],
            "include": ["code_interpreter_call.outputs"],
            "store": True,
        }
        if background:
            payload["background"] = True
        if self.instructions is not None:
            payload["instructions"] = self.instructions
        payload.update(self.options)
        return payload

    def _image_tool(self) -> list[dict[str, Any]]:
        return [] if self.image_generation is None else [{"type": "image_generation", **self.image_generation}]


def _check_string(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def _check_model(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string (a deployment name)"
    if len(value) > 256 or any(ord(ch) < 0x20 for ch in value):
        return "must be at most 256 printable characters"
    return None


def _check_input(value: Any) -> str | None:
    if isinstance(value, str):
        return None if value.strip() else "must not be empty"
    if isinstance(value, list):
        if not value:
            return "must not be an empty list"
        if not all(isinstance(item, dict) for item in value):
            return "must be a string or a list of input item objects"
        return None
    return "must be a string or a list of input item objects"


def _check_file_ids(value: Any) -> str | None:
    if not isinstance(value, list):
        return "must be a list of file id strings"
    for index, item in enumerate(value):
        if not is_valid_id(item):
            return f"item {index} is not a valid file id (letters, digits, '_' or '-')"
    return None


def input_blob_problem(name: Any) -> str | None:
    """Why ``name`` is no usable blob name in the input container; None when it is."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty blob name"
    if len(name) > MAX_INPUT_BLOB_NAME_CHARS:
        return f"must be at most {MAX_INPUT_BLOB_NAME_CHARS} characters"
    if name.startswith("/") or "\\" in name:
        return "must be a name in the input container (no leading '/', no '\\')"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name) or "://" in name or "?" in name or "#" in name:
        return "must be a blob name, not a URL (no control characters, '?', '#' or '://')"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "must not contain '..', '.' or empty path segments"
    return None


def _input_blob_problems(value: Any) -> list[FieldProblem]:
    if not isinstance(value, list):
        return [FieldProblem("input_blobs", "must be a list of blob names")]
    if len(value) > MAX_INPUT_BLOBS:
        return [FieldProblem("input_blobs", f"at most {MAX_INPUT_BLOBS} blobs")]
    problems = []
    for index, name in enumerate(value):
        problem = input_blob_problem(name)
        if problem is None and value.index(name) != index:
            problem = f"names the same blob as input_blobs[{value.index(name)}]"
        if problem:
            problems.append(FieldProblem(f"input_blobs[{index}]", problem))
    return problems


def _check_response_id(value: Any) -> str | None:
    return None if is_valid_id(value) else "must be a response id (letters, digits, '_' or '-')"


def _check_max_output_tokens(value: Any) -> str | None:
    if json_int_in(value, _MIN_OUTPUT_TOKENS) is None:
        return f"must be an integer of at least {_MIN_OUTPUT_TOKENS}"
    return None


def _check_temperature(value: Any) -> str | None:
    return None if is_json_number(value) and 0 <= value <= 2 else "must be a number from 0 to 2"


def _check_reasoning(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be an object (e.g. {\"effort\": \"low\"})"
    for key in ("effort", "summary"):
        if key in value and value[key] is not None and not isinstance(value[key], str):
            return f"{key} must be a string"
    return None


def _check_metadata(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be an object of string keys and string values"
    if len(value) > _METADATA_MAX_PAIRS:
        return f"must have at most {_METADATA_MAX_PAIRS} pairs"
    for key, item in value.items():
        if len(key) > _METADATA_MAX_KEY:
            return f"key {key[:20]!r}... is longer than {_METADATA_MAX_KEY} characters"
        if not isinstance(item, str) or len(item) > _METADATA_MAX_VALUE:
            return f"value of {key!r} must be a string of at most {_METADATA_MAX_VALUE} characters"
    return None


def _check_wait(value: Any) -> str | None:
    if is_json_number(value) and 0 <= value <= MAX_WAIT_SECONDS:
        return None
    return f"must be 0 to {MAX_WAIT_SECONDS} seconds"


def _check_image_generation(value: Any) -> str | None:
    """``true``, or the image_generation tool's options (``{"output_format": "webp", "quality": "low"}``)."""
    if not isinstance(value, (bool, dict)):
        return "must be true, false or an object of the image_generation tool's options"
    for key, item in (value.items() if isinstance(value, dict) else ()):
        if key == "type":
            return "must not name the tool's type"
        if len(key) > _IMAGE_OPTION_MAX_CHARS or not isinstance(item, (str, int, float, bool)):
            return f"{key[:20]!r} must be a short option with a string, number or boolean value"
        if isinstance(item, str) and len(item) > _IMAGE_OPTION_MAX_CHARS:
            return f"{key!r} must be at most {_IMAGE_OPTION_MAX_CHARS} characters"
    output_format = value.get("output_format") if isinstance(value, dict) else None
    if output_format is not None and output_format not in IMAGE_FORMATS:
        return f"output_format must be one of {', '.join(IMAGE_FORMATS)}"
    return None


def _check_tool_choice(value: Any) -> str | None:
    if isinstance(value, str):
        return None if value in _TOOL_CHOICES else f"must be one of {', '.join(_TOOL_CHOICES)} or an object"
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return None
    return "must be a string or an object with a 'type'"


# Every accepted field and its check; anything else is an unknown field.
_FIELDS: dict[str, Callable[[Any], str | None]] = {
    "input": _check_input,
    "instructions": _check_string,
    "model": _check_model,
    "file_ids": _check_file_ids,
    "previous_response_id": _check_response_id,
    "max_output_tokens": _check_max_output_tokens,
    "temperature": _check_temperature,
    "reasoning": _check_reasoning,
    "metadata": _check_metadata,
    "tool_choice": _check_tool_choice,
    "image_generation": _check_image_generation,
    "wait": _check_wait,
}
_PASS_THROUGH = ("previous_response_id", "max_output_tokens", "temperature", "reasoning", "metadata", "tool_choice")


def parse_run_request(body: bytes | str) -> RunRequest:
    """Parse and validate; raise InvalidRequest listing every problem found."""
    if isinstance(body, str):  # some callers hand the body over already decoded
        body = body.encode("utf-8")
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequest(
            [FieldProblem("body", f"is larger than {MAX_BODY_BYTES} bytes")], status=413
        )
    try:
        data = parse_json(body.decode("utf-8"))  # JSON on the wire is UTF-8 (RFC 8259)
    except UnicodeDecodeError:
        raise InvalidRequest([FieldProblem("body", "is not valid JSON")]) from None
    except ValueError as error:  # not JSON, or nested too deep
        raise InvalidRequest([FieldProblem("body", str(error))]) from None
    if not isinstance(data, dict):
        raise InvalidRequest([FieldProblem("body", "must be a JSON object")])

    problems = [FieldProblem(str(name), "is not a known field") for name in data
                if name not in _FIELDS and name != "input_blobs"]
    if "input" not in data:
        problems.append(FieldProblem("input", "is required"))
    for name, check in _FIELDS.items():
        # null means "not given" for the optional fields, as in the Responses API.
        if name in data and (data[name] is not None or name == "input"):
            problem = check(data[name])
            if problem:
                problems.append(FieldProblem(name, problem))
    if data.get("input_blobs") is not None:
        problems.extend(_input_blob_problems(data["input_blobs"]))
    if problems:
        raise InvalidRequest(problems)

    return RunRequest(
        input=data["input"],
        model=data.get("model"),
        instructions=data.get("instructions"),
        file_ids=tuple(data.get("file_ids") or ()),
        options={name: data[name] for name in _PASS_THROUGH if data.get(name) is not None},
        wait_seconds=float(data.get("wait") or 0),
        image_generation=_image_options(data.get("image_generation")),
        input_blobs=tuple(data.get("input_blobs") or ()),
    )


def _image_options(value: Any) -> dict[str, Any] | None:
    if value is None or value is False:
        return None
    return {} if value is True else dict(value)
