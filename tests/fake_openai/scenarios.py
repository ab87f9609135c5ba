"""The runs a person can ask the fake for by name: for every prompt on its command line, or for one
prompt by writing the name into it.

    python -m tests.fake_openai --scenario in-progress:5      # every prompt: in progress for 5 polls
    curl ... -d '{"input": "fake:no-files Plot the sales"}'   # this prompt only

A name is ``NAME`` or ``NAME:NUMBER``. What each one builds is in ``server.named_scenario``; this
module only knows the names and reads them, so the command line and the docs share one list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT = "sales-chart"
# name -> (what the number means, or "" when it takes none; what the run does)
NAMES: dict[str, tuple[str, str]] = {
    "sales-chart": ("", "the real-looking run: a PNG chart and a CSV (cited), a summary.md (not cited), and the "
                        "user's input file (never to be persisted); it ends at the first poll"),
    "in-progress": ("polls", "the sales-chart run, still queued or in_progress for that many polls (no number: until "
                             "it is cancelled)"),
    "no-files": ("", "the code interpreter ran and wrote nothing: one empty container"),
    "failing-file": ("status", "the sales-chart run with one more cited file whose download answers STATUS every "
                               "time (default 404: recorded failed at once; 500: retried until the poison queue)"),
    "expired": ("", "the sales-chart run whose container has expired: listing and downloads answer 400 "
                    "\"Container is expired.\""),
    "shell-file": ("", "the hosted shell tool wrote report.pdf in its container (a shell_call, not a code "
                       "interpreter call; the file is not cited)"),
    "generated-image": ("", "the sales-chart run plus one image_generation_call with a PNG in its result (the "
                            "request must carry the image_generation tool and the image deployment header)"),
}
# In a prompt: "fake:NAME" or "fake:NAME:NUMBER", as a word of its own.
_IN_PROMPT = re.compile(r"(?<![\w:-])fake:([a-z][a-z-]*(?::\d+)?)(?![\w:-])")


@dataclass(frozen=True)
class ScenarioName:
    name: str
    number: int | None = None

    def __str__(self) -> str:
        return self.name if self.number is None else f"{self.name}:{self.number}"


def parse(spec: str) -> ScenarioName:
    """``NAME`` or ``NAME:NUMBER``; ValueError naming every known scenario otherwise."""
    name, _, number = spec.strip().partition(":")
    if name not in NAMES:
        raise ValueError(f"unknown fake scenario {spec!r}: one of {', '.join(NAMES)}")
    takes = NAMES[name][0]
    if number and not takes:
        raise ValueError(f"the fake scenario {name!r} takes no number")
    if number and not number.isdigit():
        raise ValueError(f"the fake scenario {name!r} takes a whole number of {takes} after the colon")
    return ScenarioName(name, int(number) if number else None)


def named_in(prompts: Iterable[str]) -> str | None:
    """The first ``fake:NAME[:NUMBER]`` written in one of the prompt's texts, as written."""
    for text in prompts:
        match = _IN_PROMPT.search(text)
        if match:
            return match.group(1)
    return None


def describe() -> str:
    """One line per scenario, for the command line's help."""
    return "\n".join(f"  {name}{':' + takes.upper() if takes else ''}: {what}" for name, (takes, what) in NAMES.items())
