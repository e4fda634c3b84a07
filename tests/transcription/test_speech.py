"""The real engines on spoken sentences (espeak-ng), through the whole transcriber: Opus
packets in, text per speaker out; silence and noise make no text; and a meeting with
more speakers than the CPU can follow stays responsive while the transcriber says it is
limited.

The word error rates are printed (``pytest -s`` shows them); only English with Whisper
has a bound, a loose one for a synthetic voice.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from bridge.transcription.engines import Engine
from bridge.transcription.hallucinations import normalise
from bridge.transcription.transcriber import Segment, Transcriber

from . import speech


async def transcribe(
    engine: Engine, language: str, audio: npt.NDArray[np.int16], speed: float = 10.0
) -> list[Segment]:
    """One speaker's audio through a transcriber, faster than real time; every segment."""
    segments: list[Segment] = []
    limits: list[str | None] = []
    # Deep enough that nothing is dropped while sentences come faster than they decode.
    transcriber = Transcriber(
        engine, segments.append, language=language, on_limited=limits.append, max_waiting=16
    )
    handler = transcriber.track_started(speech.microphone("alice"))
    assert handler is not None
    epoch = asyncio.get_running_loop().time()
    await speech.Speaker(handler, speech.encode(audio), epoch).play(speed=speed)
    await transcriber.stop(grace=60)
    assert limits == []
    return sorted(segments, key=lambda segment: segment.start)


def spoken(sentences: Sequence[str], voice: str, voices: Path) -> npt.NDArray[np.int16]:
    return speech.with_pauses([speech.render(s, voice, voices) for s in sentences])


def said(segments: list[Segment]) -> str:
    return " ".join(segment.text for segment in segments)


async def test_whisper_writes_english_down(whisper: Engine, voices: Path) -> None:
    segments = await transcribe(whisper, "en", spoken(speech.ENGLISH, "en-us", voices))
    error_rate = speech.word_error_rate(" ".join(speech.ENGLISH), said(segments))
    print(f"\nWhisper-base, English (espeak-ng): WER {error_rate:.1%}: {said(segments)!r}")
    assert error_rate <= 0.20
    assert {segment.participant_id for segment in segments} == {"alice"}
    # One segment per sentence, in order, and they do not overlap.
    assert len(segments) == len(speech.ENGLISH)
    assert all(a.end <= b.start for a, b in itertools.pairwise(segments))


async def test_whisper_writes_french_in_french(whisper: Engine, voices: Path) -> None:
    segments = await transcribe(whisper, "fr", spoken(speech.FRENCH, "fr-fr", voices))
    error_rate = speech.word_error_rate(" ".join(speech.FRENCH), said(segments))
    print(f"\nWhisper-base, French (espeak-ng): WER {error_rate:.1%}: {said(segments)!r}")
    words = set(normalise(said(segments)).split())
    assert len(words & speech.FRENCH_WORDS) >= 3, said(segments)


async def test_pocketsphinx_writes_something(sphinx: Engine, voices: Path) -> None:
    segments = await transcribe(sphinx, "en", spoken(speech.ENGLISH, "en-us", voices))
    error_rate = speech.word_error_rate(" ".join(speech.ENGLISH), said(segments))
    print(f"\nPocketSphinx, English (espeak-ng): WER {error_rate:.1%}: {said(segments)!r}")
    assert said(segments).strip()


@pytest.mark.parametrize("language", ["en", "fr"])
async def test_silence_and_noise_make_no_text(whisper: Engine, language: str) -> None:
    quiet = [
        speech.silence(2.0),
        speech.white_noise(3.0, level=0.02),
        speech.white_noise(3.0, level=0.3, seed=11),
        speech.silence(1.0),
    ]
    assert await transcribe(whisper, language, np.concatenate(quiet), speed=20) == []
    # Whisper on its own, past the VAD, writes nothing either.
    for sound in quiet[:3]:
        samples = (speech.at_16k(sound)).astype(np.float32)
        assert await asyncio.to_thread(whisper.transcribe, samples, language) == ""


@pytest.mark.parametrize("engine_name", ["whisper", "sphinx"])
async def test_an_overloaded_meeting_stays_responsive(
    engine_name: str, voices: Path, request: pytest.FixtureRequest
) -> None:
    """Five people speak at once in real time; two are transcribed, the loop never
    stalls (neither engine holds the GIL for long), and the transcriber says it is
    limited."""
    engine: Engine = request.getfixturevalue(engine_name)
    segments: list[Segment] = []
    limits: list[str | None] = []
    transcriber = Transcriber(
        engine, segments.append, language="en", on_limited=limits.append, max_speakers=2
    )
    loop = asyncio.get_running_loop()
    speakers = []
    for index, sentence in enumerate(speech.ENGLISH):
        handler = transcriber.track_started(speech.microphone(f"p{index}"))
        assert handler is not None
        audio = speech.encode(speech.with_pauses([speech.render(sentence, "en-us", voices)]))
        speakers.append(speech.Speaker(handler, audio, loop.time()))
    lag = 0.0

    async def ticker() -> None:
        nonlocal lag
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            lag = max(lag, loop.time() - before - 0.01)

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    await asyncio.gather(*(speaker.play(speed=1.0, burst=1) for speaker in speakers))
    await transcriber.stop(grace=30)
    ticking.cancel()

    print(
        f"\n{engine_name}: five speakers in {time.monotonic() - started:.1f} s; "
        f"loop lag at most {lag * 1000:.0f} ms"
    )
    assert limits[-1] == "Only 2 of 5 microphones are transcribed at once."
    assert transcriber.limited is not None
    assert {segment.participant_id for segment in segments} == {"p0", "p1"}
    assert lag < 0.5
