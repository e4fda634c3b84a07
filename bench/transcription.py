"""Transcription on this machine: ``.venv/bin/python bench/transcription.py``.

1. Real-time factors: for each engine, the CPU seconds (all threads of the process) and
   the wall seconds it takes per second of speech, over the espeak-ng corpus, one
   utterance at a time after a warm-up; and the same for listening (Opus decoding and
   the VAD), per speaker.
2. Caption latency: the espeak-ng sentences, with pauses, fed to a real
   :class:`~bridge.transcription.transcriber.Transcriber` (Whisper base) as 20 ms Opus
   packets at the pace a browser sends them; for each sentence, the time from the end
   of its last sample to its segment, which is when the bridge hands the caption to the
   doors (the signaling hop to a page adds about a millisecond on loopback).
3. CPU per active speaker: the same with 1 and 2 people speaking at once.

Prints figures; asserts nothing. Needs the ``transcription`` extra and espeak-ng.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.transcription import engines
from bridge.transcription.audio import OpusDecoder
from bridge.transcription.engines import Engine, load_engine
from bridge.transcription.vad import SileroVad, SpeechDetector
from tests.devtools.models import whisper_base_dir
from tests.transcription import speech
from tests.transcription.latency import live


def measure(work: Callable[[], object], seconds: float) -> tuple[float, float]:
    """(CPU, wall) seconds of ``work`` per second of audio."""
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    return (time.process_time() - cpu) / seconds, (time.perf_counter() - wall) / seconds


class SphinxHere:
    """PocketSphinx as :class:`~bridge.transcription.engines.SphinxEngine`'s worker
    processes run it, but in this process, so that its CPU time counts here."""

    def __init__(self) -> None:
        engines._sphinx_start()

    def transcribe(self, samples: npt.NDArray[np.float32], language: str) -> str:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        return engines._sphinx_decode(pcm)

    def close(self) -> None:
        pass


def transcribe_all(
    engine: Engine, clips: list[npt.NDArray[np.float32]], language: str, out: list[str]
) -> None:
    out[:] = [engine.transcribe(clip, language) for clip in clips]


REFERENCES = {"en": speech.ENGLISH, "fr": speech.FRENCH}


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        voices = Path(folder)
        english = [speech.render(s, "en-us", voices) for s in speech.ENGLISH]
        french = [speech.render(s, "fr-fr", voices) for s in speech.FRENCH]
    clips: dict[str, list[npt.NDArray[np.float32]]] = {
        "en": [speech.at_16k(clip) for clip in english],
        "fr": [speech.at_16k(clip) for clip in french],
    }
    measured: dict[tuple[str, str], Engine | None] = {
        ("whisper-base", "en"): load_engine("whisper", str(whisper_base_dir()), "en"),
        ("pocketsphinx", "en"): SphinxHere(),
    }
    measured[("whisper-base", "fr")] = measured[("whisper-base", "en")]
    # Whisper's encoder reads 30 s whatever the length: long utterances cost less per second.
    clips["en, one long"] = [np.concatenate(clips["en"])]
    measured[("whisper-base", "en, one long")] = measured[("whisper-base", "en")]
    print("stage                        CPU s / s of speech   wall s / s of speech   WER")
    for (name, language), engine in measured.items():
        assert engine is not None
        code = language[:2]
        engine.transcribe(clips[code][0], code)  # warm-up
        samples = clips[language]
        seconds = sum(len(clip) for clip in samples) / 16000
        texts: list[str] = []
        cpu, wall = measure(
            functools.partial(transcribe_all, engine, samples, code, texts), seconds
        )
        error = speech.word_error_rate(" ".join(REFERENCES[code]), " ".join(texts))
        print(f"{name + ' (' + language + ')':29}{cpu:10.3f}{wall:22.3f}{error:12.1%}")

    packets = speech.encode(speech.with_pauses(english))
    seconds = len(packets) * speech.PACKET / speech.RATE
    vad = SileroVad()

    def listen() -> None:
        decoder, detector = OpusDecoder(), SpeechDetector(vad)
        for packet in packets:
            detector.feed(decoder.decode(packet))

    cpu, wall = measure(listen, seconds)
    print(f"{'listening (per speaker)':29}{cpu:10.4f}{wall:22.4f}")


async def captions() -> None:
    with tempfile.TemporaryDirectory() as folder:
        sentences = [speech.render(s, "en-us", Path(folder)) for s in speech.ENGLISH]
    engine = load_engine("whisper", str(whisper_base_dir()), "en")
    assert engine is not None
    engine.transcribe(speech.at_16k(sentences[0]), "en")  # warm-up
    print()
    print("speakers at once   captions   latency median   p90     max     CPU cores used")
    for speakers in (1, 2):
        latencies, used, wall = await live(engine, sentences, speakers)
        ordered = sorted(latencies)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        print(
            f"{speakers:16}{len(latencies):11}{statistics.median(latencies):15.2f} s"
            f"{p90:8.2f} s{max(latencies):6.2f} s{used / wall:13.2f}"
        )
    engine.close()


if __name__ == "__main__":
    main()
    asyncio.run(captions())
