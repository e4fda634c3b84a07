"""File names from display names, which anyone in a meeting chooses.

A display name may hold anything: path separators, ``..``, control characters, bidi
overrides, a thousand characters, or nothing. A name for the disk keeps letters, marks
and digits (in any script, so that people find their files), turns everything else into
``_`` (dots included, so no name fakes an extension or a hidden file) and stays short;
a file is then created only inside the recording's folder, exclusively, so a name can
neither leave the folder nor replace another file.
"""

from __future__ import annotations

import os
import unicodedata
from contextlib import suppress
from pathlib import Path

#: Bytes of UTF-8 a name part may take: with ``-<source>-<n>.webm`` it stays far
#: below the 255 bytes a file name may have on common file systems.
MAX_NAME_BYTES = 80
#: Owner reads and writes, the group (the operator's tools) reads, nobody else.
FILE_MODE = 0o640
_KEEP = frozenset("-_")
_FALLBACK = "participant"


def safe_name(display_name: str) -> str:
    """A display name made safe as part of a file name; never empty."""
    text = unicodedata.normalize("NFC", display_name)
    kept = "".join(c if c in _KEEP or unicodedata.category(c)[0] in "LMN" else "_" for c in text)
    # Runs of replaced characters say nothing; one "_" keeps the words apart.
    while "__" in kept:
        kept = kept.replace("__", "_")
    kept = kept.strip("_-")
    encoded = kept.encode()[:MAX_NAME_BYTES]
    kept = encoded.decode(errors="ignore").rstrip("_-")
    return kept or _FALLBACK


def printable(text: str, limit: int = 200) -> str:
    """Text for a file's metadata: no control or format characters (a NUL would cut
    it short, a bidi override would garble what players show), and not too long."""
    kept = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text)
    return " ".join(kept.split())[:limit]


def create_file(directory: Path, stem: str, suffix: str, *, numbered: bool) -> Path:
    """Create an empty file in ``directory`` and return its path; the caller then
    writes it. Its name is ``<stem>-<n><suffix>`` with the first free ``n`` from 1, or
    without numbered, ``<stem><suffix>`` (``<stem>-2<suffix>`` and on when taken).

    ``stem`` must be made of :func:`safe_name` parts: it is checked, not trusted.
    """
    assert stem and os.sep not in stem and "/" not in stem and not stem.startswith(".")
    directory.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        name = f"{stem}-{n}{suffix}" if numbered or n > 1 else f"{stem}{suffix}"
        path = directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            n += 1
            continue
        os.close(fd)
        return path


def abandon(container: object | None, path: Path | None) -> None:
    """Close a container that failed and delete its file: a half-written recording is
    worse than none (it looks whole in a listing). Never raises."""
    if container is not None:
        with suppress(Exception):
            container.close()  # type: ignore[attr-defined]
    if path is not None:
        with suppress(OSError):
            path.unlink()
