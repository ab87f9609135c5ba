"""The docs hold together: README.md and every page in docs/ link only to files that exist, and
every ``#anchor`` names a heading of its target by GitHub's slug. README.md stays short.

Needs no Azurite: it reads the Markdown files and nothing else.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
README_MAX_LINES = 220

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target "title") and ![alt](target); the text may hold one level of brackets.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lower-cased, punctuation dropped, spaces as hyphens."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading anchors by its text
    text = re.sub(r"<[^>]+>", "", text)
    kept = "".join(c for c in text.lower()
                   if c.isalnum() or c in " -_" or unicodedata.category(c).startswith("M"))
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a page has: its headings' slugs (repeats numbered as GitHub does), HTML anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(path.read_text(encoding="utf-8")):
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    """The targets of a page's links (inline and reference-style), code spans and blocks left out."""
    targets = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            targets.append(definition.group(1))
            continue
        targets += INLINE_LINK.findall(CODE_SPAN.sub("", line))
    return targets


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in links(page):
        if not target or SCHEME.match(target) or target.startswith("//"):
            continue  # an absolute URL: not checked here
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / unquote(path_part)).resolve() if path_part else page
        where = f"{page.relative_to(ROOT)}: ({target})"
        if not destination.exists():
            problems.append(f"{where} links to a missing file")
            continue
        if not anchor:
            continue
        if destination.suffix != ".md":
            problems.append(f"{where} has an anchor into a file that is not Markdown")
        elif unquote(anchor) not in anchors(destination):
            problems.append(f"{where}: no heading of {destination.relative_to(ROOT)} has the slug {anchor!r}")
    return problems


@pytest.mark.unit
def test_the_slug_is_githubs() -> None:
    assert slug("`POST /api/responses`") == "post-apiresponses"
    assert slug("`GET /api/responses/{response_id}`") == "get-apiresponsesresponse_id"
    assert slug("host.json, on purpose") == "hostjson-on-purpose"
    assert slug('Alerts and "where is run X"') == "alerts-and-where-is-run-x"
    assert slug("The run watcher's schedule, and what polling costs") \
        == "the-run-watchers-schedule-and-what-polling-costs"
    assert slug("Against the targets (2 shared cores, 20 ms per request)") \
        == "against-the-targets-2-shared-cores-20-ms-per-request"


@pytest.mark.unit
def test_the_pages_exist() -> None:
    assert DOCS, "docs/ holds no page"
    readme = set(links(ROOT / "README.md"))
    unlinked = [page.name for page in DOCS
                if not any(target.partition("#")[0] == f"docs/{page.name}" for target in readme)]
    assert not unlinked, f"README.md does not link to {unlinked}"


@pytest.mark.unit
@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    problems = broken_links(page)
    assert not problems, "\n".join(problems)


@pytest.mark.unit
def test_the_readme_is_short() -> None:
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, at most {README_MAX_LINES}: move detail into docs/"
