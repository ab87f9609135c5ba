"""Cursor paging as the v1 list routes answer it (``limit``, ``after``, ``first_id``/``last_id``/``has_more``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tests.fake_openai.errors import invalid_request

MAX_LIST_LIMIT = 100  # the most a list route gives per page


def requested_limit(query: dict[str, str]) -> int | None:
    """The ``limit`` a caller asked for (None: none asked); 400 outside 1..MAX_LIST_LIMIT."""
    if "limit" not in query:
        return None
    try:
        limit = int(query["limit"])
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise invalid_request(f"'limit' must be between 1 and {MAX_LIST_LIMIT}.", "limit")
    return limit


def cursor_page[Item](
    items: Sequence[Item],
    item_id: Callable[[Item], str],
    view: Callable[[Item], dict[str, Any]],
    *,
    after: str | None,
    limit: int,
    unknown_cursor: str,
) -> dict[str, Any]:
    """The page of ``items`` (already in list order) after the one whose id is ``after``;
    400 with ``unknown_cursor`` (``{after}`` filled in) when no item has that id."""
    start = 0
    if after:
        ids = [item_id(item) for item in items]
        if after not in ids:
            raise invalid_request(unknown_cursor.format(after=after), "after")
        start = ids.index(after) + 1
    page = items[start : start + limit]
    return {
        "object": "list",
        "data": [view(item) for item in page],
        "first_id": item_id(page[0]) if page else None,
        "last_id": item_id(page[-1]) if page else None,
        "has_more": start + limit < len(items),
    }
