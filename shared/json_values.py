"""JSON that came from outside (callers, queue messages, webhooks, Azure OpenAI): parsed, and read.

``parse_json`` refuses what would hurt later: nesting deeper than ``MAX_JSON_DEPTH`` (a body of
ten thousand ``[`` makes ``json.loads`` raise ``RecursionError``, which is not a ``ValueError``,
and a merely deep one can make the code that walks or re-serialises it raise it later).
``json.loads`` also turns ``true`` into ``True``, and ``bool`` is a subclass of ``int``: every
integer here refuses booleans, so ``"size": true`` is never a size of 1.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_JSON_DEPTH = 64  # a Responses API request nests about 6 deep; a queue message 2


def parse_json(text: bytes | str) -> Any:
    """``json.loads`` for untrusted text: ValueError, never RecursionError, for anything unusable."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:  # not JSON, or bytes that are not UTF-8 (or -16, -32)
        raise ValueError("is not valid JSON") from None
    if _too_deep(value):
        raise ValueError(f"is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _too_deep(value: Any) -> bool:
    """Walks the containers only, without recursion."""
    pending = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > MAX_JSON_DEPTH:
                    return True
                pending.append((child, depth + 1))
    return False


def json_int(value: object) -> int | None:
    """``value`` if it is a JSON integer (never a boolean), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def json_int_in(value: object, least: int, most: int | None = None) -> int | None:
    """``value`` if it is a JSON integer from ``least`` to ``most`` (None: no upper bound), else None."""
    number = json_int(value)
    if number is None or number < least or (most is not None and number > most):
        return None
    return number


def is_json_number(value: object) -> bool:
    """A finite JSON number, integer or not (never a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
