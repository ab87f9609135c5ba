"""local.settings.json's ``Values`` for the scripts that run the app without Core Tools (``make demo``).

Core Tools turns ``Values`` into environment variables before the host starts; this does the same
for the scripts, with the environment winning over the file. Values are never printed: only names.

    python -m scripts.local_settings has AZURE_OPENAI_ENDPOINT   # exit 0 when set (env or file)
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Collection, Mapping, MutableMapping
from pathlib import Path

LOCAL_SETTINGS = Path(__file__).resolve().parents[1] / "local.settings.json"


class LocalSettingsError(ValueError):
    """local.settings.json exists but is not a JSON object with a ``Values`` object."""


def read_values(path: Path = LOCAL_SETTINGS) -> dict[str, str]:
    """The non-empty ``Values`` of local.settings.json as text; none when the file is missing."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as error:
        raise LocalSettingsError(f"{path.name} is not valid JSON (line {getattr(error, 'lineno', '?')})") from None
    values = document.get("Values") if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise LocalSettingsError(f"{path.name} has no \"Values\" object")
    as_text = {str(name): value if isinstance(value, str) else json.dumps(value) for name, value in values.items()}
    return {name: value for name, value in as_text.items() if value != ""}


def apply(values: Mapping[str, str], environ: MutableMapping[str, str], skip: Collection[str] = ()) -> list[str]:
    """Sets each value the environment does not already have (the environment wins), except the names
    in ``skip`` and those starting with a ``skip`` entry ending in ``__``; returns the names set."""
    prefixes = tuple(name for name in skip if name.endswith("__"))
    applied = []
    for name, value in values.items():
        if name in environ or name in skip or any(name.startswith(prefix) for prefix in prefixes):
            continue
        environ[name] = value
        applied.append(name)
    return sorted(applied)


def describe(applied: Collection[str]) -> str:
    """What to tell the user: the names taken from the file, never their values."""
    if not applied:
        return "local.settings.json: nothing taken (missing, empty, or the environment already sets it all)"
    return f"local.settings.json: took {', '.join(sorted(applied))} (values not shown)"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "has":
        print("usage: python -m scripts.local_settings has NAME", file=sys.stderr)
        return 2
    name = argv[1]
    return 0 if os.environ.get(name) or read_values().get(name) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
