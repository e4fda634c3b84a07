"""The transcription extra is installed, or the audio tests say why they did not run."""

from __future__ import annotations

from tests.conftest import require_or_skip

from .conftest import MISSING_EXTRA


def test_the_transcription_extra_is_installed() -> None:
    require_or_skip(
        not MISSING_EXTRA,
        f"{', '.join(MISSING_EXTRA)} of the transcription extra, needed by the audio tests "
        "(pip install -e '.[transcription]')",
    )
