"""Names for stored artifacts: blob names, content types and the ASCII-safe metadata forms.

Filenames come from the model and are untrusted. The blob name keeps them readable (non-ASCII
included) but never lets them add path segments; uniqueness comes from the file id beside them.
"""

from __future__ import annotations

import mimetypes
import posixpath
import re
import unicodedata
from urllib.parse import quote

MAX_FILENAME_BYTES = 200  # leaves room for "{response_id}/{file_id}/" in Blob Storage's 1024-char limit

# A fixed table, not the host's /etc/mime.types, so a file gets the same type on every machine.
_TYPES = mimetypes.MimeTypes(filenames=())
for _ext, _type in {
    ".csv": "text/csv",
    ".md": "text/markdown",
    ".json": "application/json",
    ".parquet": "application/vnd.apache.parquet",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".xhtml": "application/xhtml+xml",  # known, so it is refused below like .html (not in Python's own table)
    ".zip": "application/zip",
    ".pdf": "application/pdf",
    ".gz": "application/gzip",
    ".tgz": "application/gzip",
    ".bz2": "application/x-bzip2",
    ".xz": "application/x-xz",
    ".zst": "application/zstd",
}.items():
    _TYPES.add_type(_type, _ext)

DEFAULT_CONTENT_TYPE = "application/octet-stream"

# Active content: a browser shown one of these inline runs its scripts on the storage account's origin.
# Such files are stored as DEFAULT_CONTENT_TYPE, which browsers download, never render. The one list
# (is_active_content_type adds two open-ended families to it).
ACTIVE_CONTENT_TYPES = frozenset({
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/xml",
    "application/xml",
    "text/xsl",
    "multipart/x-mixed-replace",  # each part is rendered as its own type, HTML included
    # JavaScript under every name a browser accepts for it
    "application/javascript",
    "application/ecmascript",
    "application/x-javascript",
    "application/x-ecmascript",
    "text/javascript",
    "text/ecmascript",
    "text/jscript",
    "text/livescript",
    "text/x-javascript",
    "text/x-ecmascript",
})


def is_active_content_type(mime_type: str) -> bool:
    """True for active content. ``mime_type`` is lowercase ``type/subtype``, as valid_mime_type gives it."""
    return (
        mime_type in ACTIVE_CONTENT_TYPES
        or mime_type.endswith("+xml")  # any XML type: browsers render XML, and run the XHTML scripts in it
        or mime_type.startswith("text/javascript")  # text/javascript1.0 to 1.5
    )


def basename(path: str) -> str:
    """The last segment of a container path (``/mnt/data/chart.png`` -> ``chart.png``)."""
    return posixpath.basename(path.replace("\\", "/").rstrip("/")).strip()


def is_placeholder_name(name: str, file_id: str) -> bool:
    """True for names like ``cfile_123.png`` that a citation uses when it lacks the real one."""
    stem = name.split(".", 1)[0]
    return stem == file_id


def safe_filename(name: str, fallback: str) -> str:
    """A single, readable path segment: no separators, controls, leading dots; bounded length."""
    name = unicodedata.normalize("NFC", basename(name))
    cleaned = "".join(
        "_" if ch in "/\\" or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") else ch
        for ch in name
    )
    cleaned = " ".join(cleaned.split())  # collapse runs of whitespace, trim the ends
    # No "..", no hidden or empty names; Blob Storage would silently drop a trailing dot.
    cleaned = cleaned.strip(". ")
    cleaned = _truncate_keeping_extension(cleaned, MAX_FILENAME_BYTES).strip(". ")  # a cut may end in "."
    return cleaned or fallback


def blob_name(response_id: str, file_id: str, filename: str) -> str:
    return f"{response_id}/{file_id}/{filename}"


MAX_DISPLAY_NAME_CHARS = 255  # the longest name a hand-written message may carry (it is read as display_name)
_MIME_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,127}$")


def display_name(name: str, fallback: str = "") -> str:
    """The one stored name of a file the model named ``name``: the blob name's last segment, and the
    ``filename`` of the message, the metadata, the status API and the event (at most
    MAX_FILENAME_BYTES UTF-8 bytes, extension kept; ``fallback`` when nothing usable is left).

    There is no other derivation: a name is never cut before this, so a long name keeps its extension
    and its content type (content_type_for reads the last extension of this name).
    """
    return safe_filename(name, fallback)


def valid_mime_type(value: object) -> str | None:
    """A ``type/subtype`` as reported by the run, or None if it is anything else."""
    if not isinstance(value, str):
        return None
    value = value.split(";")[0].strip().lower()
    return value if _MIME_TYPE.match(value) else None


def extension_for(mime_type: str | None) -> str:
    valid = valid_mime_type(mime_type)
    return (_TYPES.guess_extension(valid) or "") if valid else ""


def content_type_for(filename: str, hint: str | None = None) -> str:
    """By the last extension only (``a.csv.gz`` is gzip, and no name is read as a URL), else by the hint.

    The name and the hint are both untrusted: active content (ACTIVE_CONTENT_TYPES) and a hint that is not
    one plain ``type/subtype`` become DEFAULT_CONTENT_TYPE.
    """
    extension = posixpath.splitext(basename(filename).lower())[1]
    guessed = None
    if extension:
        guessed = _TYPES.types_map[True].get(extension) or _TYPES.types_map[False].get(extension)
    chosen = guessed or valid_mime_type(hint)
    if chosen is None or is_active_content_type(chosen):
        return DEFAULT_CONTENT_TYPE
    return chosen


def metadata_filename(name: str) -> str:
    """Blob metadata must be ASCII: the name is stored percent-encoded UTF-8."""
    return quote(name, safe="")


def content_disposition(name: str) -> str:
    """RFC 6266: an ASCII fallback plus the exact UTF-8 name in ``filename*``."""
    fallback = "".join(
        ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\' else "_" for ch in name
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _truncate_keeping_extension(name: str, limit: int) -> str:
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode("utf-8")) > 16:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    budget = limit - len(suffix.encode("utf-8"))
    # Cut on a character boundary, never through a multi-byte sequence.
    trimmed = stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore").rstrip()
    return trimmed + suffix
