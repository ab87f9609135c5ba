"""Identifier checks: every id is allowlisted before it goes into a URL or a blob name.

Ids come from the model's output, from queue messages and from callers, so none is trusted:
with only letters, digits, ``_`` and ``-`` an id can't change a path, add a query or fragment,
or name another host.
"""

from __future__ import annotations

import re
from typing import TypeGuard

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def is_valid_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def require_id(value: object, what: str) -> str:
    """Return ``value`` if it is a safe id, else raise ``ValueError`` naming ``what``."""
    if not is_valid_id(value):
        raise ValueError(f"{what} must be 1-128 letters, digits, '_' or '-', starting alphanumeric")
    return value
