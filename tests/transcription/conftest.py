"""Fixtures for the transcription tests: the engines, the Whisper-base model (fetched
once by tests/devtools/models.py) and espeak-ng speech, each skipped where missing on a
developer's machine and required under CI=true.

The modules that decode audio need the ``transcription`` extra just to be imported
(numpy, onnxruntime, faster-whisper's VAD). Without it they are not collected, and
``test_extra.py`` says why (and fails under CI=true).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import IN_CI, require_or_skip

if TYPE_CHECKING:
    from bridge.transcription.engines import Engine

#: What the transcription extra brings that the audio tests import.
EXTRA_MODULES = ("numpy", "onnxruntime", "faster_whisper", "pocketsphinx")
MISSING_EXTRA = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]

if MISSING_EXTRA and not IN_CI:
    collect_ignore = ["speech.py", "test_vad.py", "test_transcriber.py"]
    collect_ignore += ["test_speech.py", "test_real_path.py"]


@pytest.fixture(scope="session")
def whisper_dir() -> Path:
    """The checked Whisper-base model folder (downloaded and assembled the first time)."""
    from bridge.transcription.models import ModelError
    from tests.devtools.models import whisper_base_dir

    try:
        return whisper_base_dir()
    except ModelError as error:
        require_or_skip(False, f"the Whisper-base model ({error})")
        raise


@pytest.fixture(scope="session")
def whisper(whisper_dir: Path) -> Engine:
    from bridge.transcription.engines import load_engine

    engine = load_engine("whisper", str(whisper_dir), "en")
    assert engine is not None
    return engine


@pytest.fixture(scope="session")
def sphinx() -> Iterator[Engine]:
    from bridge.transcription.engines import load_engine

    engine = load_engine("pocketsphinx", None, "en")
    assert engine is not None
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where espeak-ng's renderings are kept for the session."""
    from .speech import espeak_available

    require_or_skip(espeak_available(), "espeak-ng (apt-get install espeak-ng)")
    return tmp_path_factory.mktemp("voices")
