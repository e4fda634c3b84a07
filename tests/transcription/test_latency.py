"""How soon a caption follows speech: the espeak-ng sentences said in real time to a real
transcriber with Whisper base. The bound is generous (a loaded CI machine);
bench/transcription.py measures the figures for docs/benchmarks.md."""

from __future__ import annotations

import statistics
from pathlib import Path

from bridge.transcription.engines import Engine

from . import speech
from .latency import live


async def test_captions_follow_each_sentence_within_seconds(whisper: Engine, voices: Path) -> None:
    sentences = [speech.render(text, "en-us", voices) for text in speech.ENGLISH[:3]]
    latencies, _, _ = await live(whisper, sentences, speakers=1, rounds=1)
    print(f"\ncaption latency per sentence: {[round(x, 2) for x in latencies]}")
    assert len(latencies) == 3  # every sentence became a caption
    assert all(latency > 0 for latency in latencies)
    assert statistics.median(latencies) < 10.0
