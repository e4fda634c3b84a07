"""Speech is cut into utterances at pauses and at the length limit; silence, noise and
blips make none; the cut does not depend on how the audio was split into packets."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from bridge.transcription.vad import Cutting, SileroVad, SpeechDetector, Utterance

from . import speech

SECOND = 16000


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad()


def detect(
    vad: SileroVad, audio: npt.NDArray[np.float32], cutting: Cutting | None = None, step: int = 320
) -> list[Utterance]:
    """Feed ``audio`` in pieces of ``step`` samples (20 ms by default), then flush."""
    detector = SpeechDetector(vad, cutting)
    found = []
    for start in range(0, len(audio), step):
        found += detector.feed(audio[start : start + step])
    return found + detector.flush()


def test_two_sentences_are_two_utterances_that_hold_them(vad: SileroVad, voices: Path) -> None:
    first = speech.render(speech.ENGLISH[0], "en-us", voices)
    second = speech.render(speech.ENGLISH[1], "en-us", voices)
    audio = speech.at_16k(speech.with_pauses([first, second], pause=1.0))
    # Where each sentence lies (espeak adds a little silence of its own around them).
    bounds = [(1.0, 1.0 + len(first) / speech.RATE)]
    after = bounds[0][1] + 1.0
    bounds.append((after, after + len(second) / speech.RATE))

    found = detect(vad, audio)

    assert len(found) == 2, [(u.start / SECOND, u.end / SECOND) for u in found]
    for utterance, (start, end) in zip(found, bounds, strict=True):
        assert start - 0.3 <= utterance.start / SECOND <= start + 0.4
        assert end - 0.4 <= utterance.end / SECOND <= end + 0.3
        assert np.array_equal(utterance.samples, audio[utterance.start : utterance.end])


def test_silence_noise_and_a_blip_make_no_utterance(vad: SileroVad) -> None:
    assert detect(vad, np.zeros(3 * SECOND, np.float32)) == []
    assert detect(vad, speech.at_16k(speech.white_noise(3.0, level=0.3))) == []
    assert detect(vad, speech.at_16k(speech.white_noise(3.0, level=0.02))) == []


def test_too_little_speech_is_dropped(vad: SileroVad, voices: Path) -> None:
    word = speech.at_16k(speech.with_pauses([speech.render("Yes.", "en-us", voices)]))
    assert len(detect(vad, word)) == 1
    assert detect(vad, word, Cutting(min_speech=1.0)) == []


def test_a_long_speech_is_cut_at_the_limit_preferably_in_a_pause(
    vad: SileroVad, voices: Path
) -> None:
    talk = [speech.render(sentence, "en-us", voices) for sentence in speech.ENGLISH[:3]]
    audio = speech.at_16k(speech.with_pauses(talk, pause=0.3))
    cutting = Cutting(max_length=2.5, pause=1.0)

    found = detect(vad, audio, cutting)

    assert len(found) >= 3
    assert all(len(u.samples) <= 2.5 * SECOND for u in found)
    # Nothing heard twice, and the pieces follow each other.
    assert all(a.end <= b.start for a, b in itertools.pairwise(found))


def test_the_cut_does_not_depend_on_the_packet_size(vad: SileroVad, voices: Path) -> None:
    talk = [speech.render(sentence, "en-us", voices) for sentence in speech.ENGLISH[3:]]
    audio = speech.at_16k(speech.with_pauses(talk))
    whole = detect(vad, audio, step=len(audio))
    assert len(whole) == 2
    for step in (160, 320, 777):
        pieces = detect(vad, audio, step=step)
        assert [(u.start, u.end) for u in pieces] == [(u.start, u.end) for u in whole]


def test_a_jump_ends_the_utterance_and_moves_the_timeline(vad: SileroVad, voices: Path) -> None:
    sentence = speech.at_16k(speech.render(speech.ENGLISH[3], "en-us", voices))
    detector = SpeechDetector(vad, start=1000)
    assert detector.feed(sentence) == []
    ended = detector.skip_to(10 * SECOND)
    assert len(ended) == 1 and ended[0].start >= 1000
    assert detector.position == 10 * SECOND
    again = detector.feed(sentence) + detector.flush()
    assert len(again) == 1 and again[0].start >= 10 * SECOND
