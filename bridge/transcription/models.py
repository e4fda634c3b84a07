"""The Whisper-base model directory: put together from its parts, and checked.

The bridge never downloads a model (nothing may leave the agency's machines, and
nothing is fetched from a hub at run time): an operator brings the files, and the
transcriber loads them from a directory. This module checks such a directory against
the hashes pinned here, and assembles one from the split ``model.bin`` that some
distributions ship (two wheels each holding half of it, see
``tests/devtools/models.py``), so a corrupted or substituted file is refused before
CTranslate2 ever parses it.

Only the standard library is used: operators may run it before installing the
``transcription`` extra.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Reading and hashing in pieces of this size keeps memory flat for the 145 MB file.
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One file of a model directory, as it must be."""

    name: str
    sha256: str
    size: int


#: Whisper base, converted for CTranslate2 (the files faster-whisper loads).
WHISPER_BASE_FILES = (
    ModelFile(
        "model.bin", "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9", 145217532
    ),
    ModelFile(
        "config.json", "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a", 2309
    ),
    ModelFile(
        "tokenizer.json",
        "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
        2203239,
    ),
    ModelFile(
        "vocabulary.txt",
        "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
        459861,
    ),
)

#: The names of the pieces of ``model.bin``, in the order they are joined.
WHISPER_BASE_PARTS = ("model.bin.part1", "model.bin.part2")


class ModelError(ValueError):
    """A model file is missing or is not the expected one; the message says which and
    what to do."""


def verify_model_dir(model_dir: Path, files: Sequence[ModelFile] = WHISPER_BASE_FILES) -> None:
    """Check every file of ``model_dir`` against its pinned size and hash.

    Raises :class:`ModelError` naming the first file that is missing or differs.
    Hashing reads ~150 MB: call it once when a model is installed or loaded, not per use.
    """
    for expected in files:
        _check(model_dir / expected.name, expected)


def assemble_whisper_base(sources: Sequence[Path], model_dir: Path) -> Path:
    """Build a checked Whisper-base model directory in ``model_dir`` from ``sources``,
    folders that hold between them the pieces of ``model.bin``
    (:data:`WHISPER_BASE_PARTS`) and the small files (``config.json``, ...). Returns
    ``model_dir``.

    A directory already complete and intact is left as it is, so calling this again is
    cheap apart from hashing. ``model.bin`` is written under a temporary name and only
    renamed into place once its size and hash match; a file that does not match is
    deleted and :class:`ModelError` raised.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    for expected in WHISPER_BASE_FILES:
        target = model_dir / expected.name
        if target.exists():
            try:
                _check(target, expected)
                continue
            except ModelError:
                target.unlink()
        if expected.name == "model.bin":
            pieces = [_find(sources, name) for name in WHISPER_BASE_PARTS]
        else:
            pieces = [_find(sources, expected.name)]
        _join(pieces, target, expected)
    return model_dir


def _find(sources: Sequence[Path], name: str) -> Path:
    for source in sources:
        if (source / name).is_file():
            return source / name
    searched = ", ".join(str(source) for source in sources) or "no folder"
    raise ModelError(f"{name} is in none of the model sources ({searched}).")


def _join(pieces: Sequence[Path], target: Path, expected: ModelFile) -> None:
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as source:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        _compare(target, expected, size, digest.hexdigest())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _check(path: Path, expected: ModelFile) -> None:
    if not path.is_file():
        raise ModelError(f"The model file {path} is missing.")
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    _compare(path, expected, size, digest.hexdigest())


def _compare(path: Path, expected: ModelFile, size: int, sha256: str) -> None:
    if size != expected.size:
        raise ModelError(
            f"The model file {path} has {size} bytes, not the {expected.size} expected: "
            "it is truncated or not the right file. Fetch the model again."
        )
    if sha256 != expected.sha256:
        raise ModelError(
            f"The model file {path} has sha256 {sha256}, not {expected.sha256}: "
            "it is corrupted or was substituted. Fetch the model again from a trusted copy."
        )
