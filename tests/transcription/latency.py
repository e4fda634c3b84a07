"""Caption latency: people saying the espeak-ng sentences, in real time, to a real
transcriber; how long after each sentence's end its segment comes back. Used by the
latency test (with a generous bound) and by bench/transcription.py (the figures)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import numpy.typing as npt

from bridge.meeting.media import MediaFrame
from bridge.transcription.engines import Engine
from bridge.transcription.transcriber import Segment, Transcriber

from . import speech


async def live(
    engine: Engine, sentences: list[npt.NDArray[np.int16]], speakers: int, rounds: int = 2
) -> tuple[list[float], float, float]:
    """Feed ``speakers`` people saying the sentences (with pauses) in real time; returns
    each sentence's caption latency, and the CPU and wall seconds it all took."""
    pause = speech.silence(1.5)
    audio = np.concatenate(
        [pause, *(p for _ in range(rounds) for s in sentences for p in (s, pause))]
    )
    ends: list[float] = []
    at = len(pause)
    for _ in range(rounds):
        for sentence in sentences:
            at += len(sentence)
            ends.append(at / speech.RATE)
            at += len(pause)
    packets = speech.encode(audio)
    segments: list[tuple[float, Segment]] = []
    loop = asyncio.get_running_loop()
    transcriber = Transcriber(
        engine,
        lambda segment: segments.append((loop.time(), segment)),
        language="en",
        max_speakers=speakers,
    )
    handlers = []
    for n in range(speakers):
        handler = transcriber.track_started(speech.microphone(f"p{n}"))
        assert handler is not None
        handlers.append(handler)
    cpu, start = time.process_time(), loop.time()
    for index, packet in enumerate(packets):
        due = start + index * speech.PACKET / speech.RATE
        await asyncio.sleep(max(0.0, due - loop.time()))
        now = loop.time()
        for handler in handlers:
            handler(MediaFrame(packet, index * speech.PACKET, True, now))

    def latencies() -> list[float]:
        found = []
        for end in ends:
            # The segment of this sentence: the first one of p0 that ends near it.
            done = [
                t
                for t, s in segments
                if s.participant_id == "p0" and abs(s.end - start - end) < 1.0
            ]
            if done:
                found.append(min(done) - (start + end))
        return found

    # The last sentences' captions, however loaded the machine is (up to a limit).
    deadline = loop.time() + 15
    while loop.time() < deadline and len(latencies()) < len(ends):  # noqa: ASYNC110 - segments come from worker threads
        await asyncio.sleep(0.1)
    used, wall = time.process_time() - cpu, loop.time() - start
    await transcriber.stop()
    return latencies(), used, wall
