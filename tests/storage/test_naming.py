"""Untrusted filenames become safe, readable blob names; metadata stays ASCII."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from shared.storage.naming import (
    _TYPES,
    MAX_FILENAME_BYTES,
    content_disposition,
    content_type_for,
    display_name,
    is_active_content_type,
    is_placeholder_name,
    metadata_filename,
    safe_filename,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("chart.png", "chart.png"),
        ("/mnt/data/chart.png", "chart.png"),
        ("../../etc/passwd", "passwd"),
        ("..", "cfile_1"),
        ("...hidden", "hidden"),
        ("report.", "report"),
        ("trailing . ", "trailing"),
        ("a\\b.txt", "b.txt"),
        ("tab\there\nnew.csv", "tab_here_new.csv"),
        ("  many   spaces .txt", "many spaces .txt"),
        ("bell\x07.txt", "bell_.txt"),
        ("rtl\u202egnp.exe", "rtl_gnp.exe"),
        ("銷售圖表.png", "銷售圖表.png"),
        ("cafe\u0301.txt", "café.txt"),  # NFC
        ("   ", "cfile_1"),
        ("", "cfile_1"),
    ],
)
def test_safe_filename(raw: str, expected: str) -> None:
    assert safe_filename(raw, "cfile_1") == expected


def test_long_names_are_cut_on_a_character_boundary_keeping_the_extension() -> None:
    name = safe_filename("表" * 300 + ".xlsx", "f")
    assert name.endswith(".xlsx")
    assert len(name.encode("utf-8")) <= MAX_FILENAME_BYTES
    name.encode("utf-8").decode("utf-8")  # still valid UTF-8


@pytest.mark.parametrize(
    "raw", ["a" * 199 + "." + "b" * 60, "x" * 300, "名" * 80 + ".", " . a . ", "a\x00" * 150 + ".csv"]
)
def test_safe_filename_is_stable(raw: str) -> None:
    once = safe_filename(raw, "f")
    assert safe_filename(once, "f") == once  # what the HTTP function names, the queue function accepts
    assert not once.endswith((".", " "))


def test_placeholder_names() -> None:
    assert is_placeholder_name("cfile_abc.png", "cfile_abc")
    assert is_placeholder_name("cfile_abc", "cfile_abc")
    assert not is_placeholder_name("chart.png", "cfile_abc")


def test_metadata_filename_is_ascii_and_round_trips() -> None:
    for name in ("銷售圖表.png", "a b&c=d%.csv", "naïve \"quote\".txt"):
        encoded = metadata_filename(name)
        assert encoded.isascii() and "/" not in encoded
        assert unquote(encoded) == name


def test_content_disposition_carries_both_forms() -> None:
    assert content_disposition('q"uote.txt') == (
        "attachment; filename=\"q_uote.txt\"; filename*=UTF-8''q%22uote.txt"
    )


@pytest.mark.parametrize(
    ("name", "hint", "expected"),
    [
        ("a.png", None, "image/png"),
        ("a.CSV", None, "text/csv"),
        ("a.xlsx", None, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("noext", "image/jpeg", "image/jpeg"),
        ("noext", None, "application/octet-stream"),
        ("report.csv.gz", None, "application/gzip"),
        ("data:text/html,x.png", None, "image/png"),
        ("archive.tar", None, "application/x-tar"),
    ],
)
def test_content_type(name: str, hint: str | None, expected: str) -> None:
    assert content_type_for(name, hint) == expected


ACTIVE_EXTENSIONS = [".html", ".htm", ".svg", ".js", ".mjs", ".xhtml", ".xml"]
ACTIVE_HINTS = [
    "text/html",
    "image/svg+xml",
    "application/javascript",
    "text/javascript",
    "application/xhtml+xml",
    "text/xml",
    "application/xml",
]


@pytest.mark.parametrize("extension", ACTIVE_EXTENSIONS + [e.upper() for e in ACTIVE_EXTENSIONS])
@pytest.mark.parametrize("hint", [None, "text/html", "image/png", "text/plain"])
def test_active_extensions_give_octet_stream_whatever_the_hint(extension: str, hint: str | None) -> None:
    assert content_type_for("/mnt/data/page" + extension, hint) == "application/octet-stream"


@pytest.mark.parametrize("hint", ACTIVE_HINTS)
def test_active_hints_give_octet_stream(hint: str) -> None:
    for form in (hint, hint.upper(), f" {hint} ", f"{hint};charset=utf-8", f"{hint}; charset=utf-8"):
        for name in ("noext", "cfile_abc", "weird.ext-unknown"):
            assert content_type_for(name, form) == "application/octet-stream", (name, form)


@pytest.mark.parametrize(
    "hint",
    [
        "application/rss+xml",  # any XML type renders, scripts included
        "application/x-javascript",
        "text/ecmascript",
        "text/xsl",
        "multipart/x-mixed-replace",
        "text/html,image/png",  # not one MIME type: a browser may still pick text/html out of it
        "image/png, text/html",
    ],
)
def test_other_active_or_malformed_hints_give_octet_stream(hint: str) -> None:
    assert content_type_for("noext", hint) == "application/octet-stream"


@pytest.mark.parametrize(
    ("name", "hint", "expected"),
    [
        ("chart.png", None, "image/png"),
        ("data.csv", None, "text/csv"),
        ("paper.pdf", None, "application/pdf"),
        ("result.json", None, "application/json"),
        ("book.xlsx", None, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("report.html.png", None, "image/png"),  # the last extension wins
        ("x.png", "text/html", "image/png"),  # the extension wins over the hint
        ("noext", "text/html", "application/octet-stream"),
        ("noext", "text/csv", "text/csv"),
        ("noext", "application/pdf", "application/pdf"),
        ("noext", "Image/PNG; charset=binary", "image/png"),
        ("page.html.txt", "text/html", "text/plain"),
    ],
)
def test_ordinary_types_are_kept(name: str, hint: str | None, expected: str) -> None:
    assert content_type_for(name, hint) == expected


def test_no_extension_in_the_table_maps_to_an_active_type() -> None:
    for table in _TYPES.types_map:
        for extension in table:
            assert not is_active_content_type(content_type_for("f" + extension)), extension


@pytest.mark.parametrize(
    ("raw", "stored", "content_type"),
    [
        ("x" * 300 + ".csv", "x" * 196 + ".csv", "text/csv"),
        ("/mnt/data/" + "é" * 150 + ".xlsx", "é" * 97 + ".xlsx",
         "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("報" * 120 + ".json", "報" * 65 + ".json", "application/json"),
        ("../../etc/passwd.csv", "passwd.csv", "text/csv"),
        ("rep\u202eort\x00.csv..", "rep_ort_.csv", "text/csv"),
        ("..", "cfile_1", "application/octet-stream"),
    ],
)
def test_one_derivation_of_the_stored_name(raw: str, stored: str, content_type: str) -> None:
    """display_name (what messages, metadata, status and events carry) and the blob's leaf are one name."""
    name = display_name(raw, "cfile_1")
    assert name == safe_filename(raw, "cfile_1") == stored
    assert len(name.encode("utf-8")) <= MAX_FILENAME_BYTES
    assert content_type_for(name) == content_type
