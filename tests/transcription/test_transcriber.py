"""The transcriber as a media sink, with a stand-in engine: what it takes, whom each text
is attributed to and when it was said, how it shares out slots and CPU, and that it says
when it is limited."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from bridge.meeting.media import TrackPublished
from bridge.transcription.transcriber import Segment, Transcriber
from tests.media.helpers import wait_for

from . import speech


class Engine:
    """Says how long each utterance was; can be held, or fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()
        self.release.set()
        self.fail_next = False

    def transcribe(self, samples: npt.NDArray[np.float32], language: str) -> str:
        self.calls += 1
        self.release.wait(10)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("engine failure")
        return f"{language}:{len(samples) / 16000:.1f}s"

    def close(self) -> None:
        self.release.set()


class Recorder:
    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.limits: list[str | None] = []


Make = Callable[..., tuple[Transcriber, Engine, Recorder]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    made: list[Transcriber] = []

    def build(**options: Any) -> tuple[Transcriber, Engine, Recorder]:
        engine, recorder = Engine(), Recorder()
        transcriber = Transcriber(
            engine, recorder.segments.append, on_limited=recorder.limits.append, **options
        )
        made.append(transcriber)
        return transcriber, engine, recorder

    yield build
    for transcriber in made:
        await transcriber.stop(grace=5)


@pytest.fixture(scope="module")
def sentence(voices: Path) -> npt.NDArray[np.int16]:
    """About 2.5 s of speech."""
    return speech.render(speech.ENGLISH[0], "en-us", voices)


async def play(
    transcriber: Transcriber, track: TrackPublished, audio: npt.NDArray[np.int16]
) -> float:
    """Send ``audio`` on ``track`` 20 times faster than real time; return its epoch."""
    handler = transcriber.track_started(track)
    assert handler is not None
    epoch = asyncio.get_running_loop().time()
    await speech.Speaker(handler, speech.encode(audio), epoch).play(speed=20)
    return epoch


async def test_only_opus_microphones_are_taken(make: Make) -> None:
    transcriber, _engine, _recorder = make()
    assert transcriber.track_started(TrackPublished("a", "a/camera", "video", "camera")) is None
    assert transcriber.track_started(TrackPublished("a", "a/screen", "video", "screen")) is None
    assert transcriber.track_started(speech.microphone("b", "audio/PCMU")) is None
    assert transcriber.track_started(speech.microphone("c", "audio/OPUS")) is not None


async def test_each_utterance_is_its_speakers_on_the_meeting_clock(
    make: Make, sentence: npt.NDArray[np.int16]
) -> None:
    transcriber, _engine, recorder = make(language="en")
    audio = speech.with_pauses([sentence], pause=1.0)
    epochs = await asyncio.gather(
        play(transcriber, speech.microphone("alice"), audio),
        play(transcriber, speech.microphone("bob"), audio),
    )
    await wait_for(lambda: len(recorder.segments) == 2)

    spoken = len(sentence) / speech.RATE
    for segment in recorder.segments:
        epoch = epochs[0] if segment.participant_id == "alice" else epochs[1]
        assert segment.text.startswith("en:")
        assert 1.0 - 0.4 <= segment.start - epoch <= 1.0 + 0.3
        assert 1.0 + spoken - 0.4 <= segment.end - epoch <= 1.0 + spoken + 0.4
    assert sorted(s.participant_id for s in recorder.segments) == ["alice", "bob"]
    assert recorder.limits == []


async def test_more_microphones_than_slots_wait_their_turn(
    make: Make, sentence: npt.NDArray[np.int16]
) -> None:
    transcriber, _engine, recorder = make(max_speakers=1)
    audio = speech.with_pauses([sentence], pause=1.0)
    alice, bob = speech.microphone("alice"), speech.microphone("bob")
    await play(transcriber, alice, audio)
    assert recorder.limits == []
    await play(transcriber, bob, audio)  # no slot: not heard
    assert recorder.limits == ["Only 1 of 2 microphones are transcribed at once."]
    assert transcriber.limited == recorder.limits[-1]

    transcriber.track_ended(alice.track_id)  # bob gets alice's slot
    assert recorder.limits[-1] is None and transcriber.limited is None
    transcriber.track_ended(bob.track_id)
    bob_again = TrackPublished("bob", "bob/microphone", "audio", "microphone", "audio/opus")
    await play(transcriber, bob_again, audio)
    await wait_for(lambda: len(recorder.segments) == 2)
    assert [s.participant_id for s in recorder.segments] == ["alice", "bob"]


async def test_a_waiting_microphone_is_heard_once_it_has_a_slot(
    make: Make, sentence: npt.NDArray[np.int16]
) -> None:
    transcriber, _engine, recorder = make(max_speakers=1)
    audio = speech.with_pauses([sentence], pause=1.0)
    alice = speech.microphone("alice")
    assert transcriber.track_started(alice) is not None
    bob_frames = transcriber.track_started(speech.microphone("bob"))
    assert bob_frames is not None
    transcriber.track_ended(alice.track_id)
    epoch = asyncio.get_running_loop().time()
    await speech.Speaker(bob_frames, speech.encode(audio), epoch).play(speed=20)
    await wait_for(lambda: len(recorder.segments) == 1)
    assert recorder.segments[0].participant_id == "bob"


async def test_a_busy_engine_drops_speech_says_so_and_recovers(
    make: Make, sentence: npt.NDArray[np.int16]
) -> None:
    transcriber, engine, recorder = make(workers=1, max_waiting=0, recovery=0.3)
    engine.release.clear()
    audio = speech.with_pauses([sentence, sentence, sentence], pause=1.0)
    await play(transcriber, speech.microphone("alice"), audio)
    await wait_for(lambda: recorder.limits)
    assert recorder.limits == ["The server is short of CPU: some speech was not transcribed."]

    engine.release.set()
    await wait_for(lambda: recorder.limits[-1] is None)
    # The utterance being decoded when the others came was transcribed; they were not.
    assert len(recorder.segments) == 1 and engine.calls == 1


async def test_stop_transcribes_what_was_heard(
    make: Make, sentence: npt.NDArray[np.int16]
) -> None:
    transcriber, _engine, recorder = make()
    # Speech up to the very end: no pause has ended the utterance yet.
    await play(
        transcriber, speech.microphone("alice"), np.concatenate([speech.silence(1), sentence])
    )
    await asyncio.sleep(0.2)
    assert recorder.segments == []
    await transcriber.stop(grace=5)
    assert [s.participant_id for s in recorder.segments] == ["alice"]
    assert transcriber.track_started(speech.microphone("bob")) is None


async def test_an_engine_failure_loses_one_utterance(
    make: Make, sentence: npt.NDArray[np.int16]
) -> None:
    transcriber, engine, recorder = make()
    engine.fail_next = True
    await play(transcriber, speech.microphone("alice"), speech.with_pauses([sentence, sentence]))
    await wait_for(lambda: engine.calls == 2 and recorder.segments)
    assert len(recorder.segments) == 1


async def test_a_track_that_ends_is_transcribed_to_its_end(
    make: Make, sentence: npt.NDArray[np.int16]
) -> None:
    transcriber, _engine, recorder = make()
    alice = speech.microphone("alice")
    await play(transcriber, alice, np.concatenate([speech.silence(1), sentence]))
    transcriber.track_ended(alice.track_id)
    await wait_for(lambda: recorder.segments)
    assert recorder.segments[0].participant_id == "alice"
