"""Write the settings table in docs/operations.md and local.settings.json.example from ``shared.settings``.

    .venv/bin/python -m scripts.settings_docs           # rewrite both
    .venv/bin/python -m scripts.settings_docs --check   # exit 1 naming each file that is out of date

The table lives between two markers in docs/operations.md; the example is the local settings file
``make start`` copies for a first run. Edit a setting in ``shared/settings.py``, then run this.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shared.settings import SETTINGS, Setting

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "operations.md"
EXAMPLE = ROOT / "local.settings.json.example"
TABLE_START = "<!-- settings table: written by `python -m scripts.settings_docs` from shared/settings.py -->"
TABLE_END = "<!-- end of the settings table -->"


def shown_default(setting: Setting[Any]) -> str:
    """The default as the docs show it: as it would be written in the environment."""
    if setting.shown_default:
        return setting.shown_default
    value = setting.default
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def settings_table() -> str:
    rows = ["| setting | required | default | |", "|---|---|---|---|"]
    rows += [f"| `{setting.name}` | {setting.required} | {shown_default(setting)} | {setting.description} |"
             for setting in SETTINGS]
    return "\n".join(row.replace("|  |", "| |") for row in rows)


def docs_with_table(docs: str) -> str:
    """docs/operations.md with the table between its markers written anew."""
    start, end = docs.find(TABLE_START), docs.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"{DOCS.relative_to(ROOT)} lacks the settings table's markers: {TABLE_START} ... {TABLE_END}")
    return f"{docs[: start + len(TABLE_START)]}\n{settings_table()}\n{docs[end:]}"


def example() -> str:
    values = {setting.name: setting.example for setting in SETTINGS if setting.example is not None}
    return json.dumps({"IsEncrypted": False, "Values": values}, indent=2) + "\n"


def stale_files() -> list[str]:
    """The files that differ from what the table writes."""
    stale = []
    if DOCS.read_text(encoding="utf-8") != docs_with_table(DOCS.read_text(encoding="utf-8")):
        stale.append(str(DOCS.relative_to(ROOT)))
    if EXAMPLE.read_text(encoding="utf-8") != example():
        stale.append(str(EXAMPLE.relative_to(ROOT)))
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"{name} is out of date: run python -m scripts.settings_docs", file=sys.stderr)
        return 1 if stale else 0
    DOCS.write_text(docs_with_table(DOCS.read_text(encoding="utf-8")), encoding="utf-8")
    EXAMPLE.write_text(example(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
