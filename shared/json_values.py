"""Values read out of JSON that came from outside: Azure OpenAI's answers, callers, queue messages.

``json.loads`` turns ``true`` into ``True``, and ``bool`` is a subclass of ``int``: every integer
here refuses booleans, so ``"size": true`` is never a size of 1.
"""

from __future__ import annotations

import math


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
