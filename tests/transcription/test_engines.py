"""load_engine refuses, in plain words, what cannot work: an unknown engine, a missing
extra, a missing or wrong model directory, a language the engine does not know."""

from __future__ import annotations

import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from bridge.transcription.engines import SphinxEngine, WhisperEngine, load_engine
from tests.conftest import require_or_skip


def test_none_is_no_engine() -> None:
    assert load_engine("none", None, "fr") is None


def test_an_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown transcription engine 'vosk': use whisper"):
        load_engine("vosk", None, "fr")


def test_whisper_needs_an_existing_model_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a model directory"):
        load_engine("whisper", None, "fr")
    with pytest.raises(ValueError, match="does not exist"):
        load_engine("whisper", str(tmp_path / "nowhere"), "fr")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"not a Whisper model directory .*model\.bin, tokenizer"):
        load_engine("whisper", str(tmp_path), "fr")


def test_whisper_refuses_a_model_directory_it_cannot_load(tmp_path: Path) -> None:
    require_or_skip(find_spec("faster_whisper") is not None, "faster-whisper (the extra)")
    for name in ("model.bin", "config.json", "tokenizer.json"):
        (tmp_path / name).write_bytes(b"not a model")
    with pytest.raises(ValueError, match="could not be loaded"):
        load_engine("whisper", str(tmp_path), "fr")


def test_a_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("model.bin", "config.json", "tokenizer.json"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)
    with pytest.raises(ValueError, match=r"faster_whisper is missing.*\[transcription\]"):
        WhisperEngine(str(tmp_path), "fr")
    with pytest.raises(ValueError, match=r"pocketsphinx is missing.*\[transcription\]"):
        SphinxEngine()


def test_pocketsphinx_is_english_only() -> None:
    with pytest.raises(ValueError, match=r"only transcribes English .*not 'fr'"):
        load_engine("pocketsphinx", None, "fr")


def test_whisper_refuses_a_language_it_does_not_know(whisper_dir: Path) -> None:
    require_or_skip(find_spec("faster_whisper") is not None, "faster-whisper (the extra)")
    with pytest.raises(ValueError, match="does not know 'xx'"):
        load_engine("whisper", str(whisper_dir), "xx")
