"""local.settings.json's ``Values`` for the scripts that run the app without Core Tools (``make start``'s
development host, ``make demo``).

Core Tools turns ``Values`` into environment variables before the host starts; this does the same
for the scripts, with the environment winning over the file. Values are never printed: only names.
The file is ``local.settings.json`` beside the code, or the one ``LOCAL_SETTINGS`` names.

    python -m scripts.local_settings check                     # exit 0; or one line naming file and line, exit 1
    python -m scripts.local_settings has AZURE_OPENAI_ENDPOINT  # exit 0 when set (env or file), else 1
    python -m scripts.local_settings uses-development-storage   # exit 0 when AzureWebJobsStorage means Azurite
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Collection, Mapping, MutableMapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL_SETTINGS = Path(os.environ.get("LOCAL_SETTINGS") or ROOT / "local.settings.json")
DEVELOPMENT_STORAGE = "UseDevelopmentStorage=true"
_USAGE = "usage: python -m scripts.local_settings check | has NAME | uses-development-storage"


class LocalSettingsError(ValueError):
    """local.settings.json exists but is not a JSON object with a ``Values`` object; the message is
    one line naming the file (and the line, for a JSON error)."""


def _shown(path: Path) -> str:
    return path.name if path.resolve().parent == ROOT else str(path)


def read_values(path: Path = LOCAL_SETTINGS) -> dict[str, str]:
    """The non-empty ``Values`` of local.settings.json as text; none when the file is missing."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as error:
        raise LocalSettingsError(f"{_shown(path)} line {error.lineno}: not valid JSON ({error.msg}, "
                                 f"column {error.colno})") from None
    except UnicodeDecodeError:
        raise LocalSettingsError(f"{_shown(path)} is not valid JSON (not UTF-8 text)") from None
    except OSError as error:
        raise LocalSettingsError(f"{_shown(path)} cannot be read: {error.strerror}") from None
    values = document.get("Values") if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise LocalSettingsError(f"{_shown(path)} has no \"Values\" object (see local.settings.json.example)")
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


def is_development_storage(value: str | None) -> bool:
    return (value or "").replace(" ", "").lower().rstrip(";") == DEVELOPMENT_STORAGE.lower()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("check", "has", "uses-development-storage") or len(argv) != (
            2 if argv[0] == "has" else 1):
        print(_USAGE, file=sys.stderr)
        return 2
    try:
        values = read_values(LOCAL_SETTINGS)
    except LocalSettingsError as error:
        print(error, file=sys.stderr)
        return 1 if argv[0] == "check" else 2
    if argv[0] == "has":
        return 0 if os.environ.get(argv[1]) or values.get(argv[1]) else 1
    if argv[0] == "uses-development-storage":
        storage = os.environ.get("AzureWebJobsStorage") or values.get("AzureWebJobsStorage")  # noqa: SIM112
        return 0 if is_development_storage(storage) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
