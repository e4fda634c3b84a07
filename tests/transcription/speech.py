"""Spoken test material made on the spot: espeak-ng sentences, silence and noise, as
the 20 ms Opus packets a browser's microphone sends, and word error rates.

espeak-ng is a synthetic voice: the engines do worse on it than on people, so the
bounds the tests assert are loose, and the figures they print are for comparison
between runs, not a measure of accuracy on real meetings.
"""

from __future__ import annotations

import asyncio
import fractions
import hashlib
import shutil
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from bridge.meeting.media import FrameHandler, MediaFrame, TrackPublished
from bridge.transcription.hallucinations import normalise

RATE = 48000
PACKET = 960  # 20 ms at 48 kHz

ENGLISH = (
    "The meeting will start in a few minutes.",
    "Please share your screen with the whole team.",
    "We need to review the budget before Friday.",
    "Can everyone hear me clearly?",
    "Let us move on to the next point on the agenda.",
)
FRENCH = (
    "Bonjour à tous, la réunion va commencer.",
    "Pouvez-vous partager votre écran, s'il vous plaît ?",
    "Nous devons valider le budget avant vendredi.",
)
#: Words of any French sentence, rarely of an English one.
FRENCH_WORDS = frozenset(
    "le la les de des du un une et est nous vous tous avant votre pour pas que qui "
    "bonjour reunion commencer partager ecran plait devons valider budget vendredi".split()
)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def render(text: str, voice: str, cache: Path) -> npt.NDArray[np.int16]:
    """``text`` spoken by espeak-ng's ``voice``, as 48 kHz mono samples (cached)."""
    key = hashlib.sha256(f"{voice}\n{text}".encode()).hexdigest()[:16]
    path = cache / f"{key}.wav"
    if not path.exists():
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", "150", "-w", str(path), text],
            check=True,
            capture_output=True,
        )
    with wave.open(str(path)) as source:
        rate = source.getframerate()
        samples = np.frombuffer(source.readframes(source.getnframes()), np.int16)
    return resample(samples, rate)


def resample(samples: npt.NDArray[np.int16], rate: int, to: int = RATE) -> npt.NDArray[np.int16]:
    frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to)
    pieces = [f.to_ndarray()[0] for f in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(pieces).astype(np.int16)


def at_16k(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    """48 kHz samples as the VAD takes them."""
    return (resample(samples, RATE, 16000) / 32768).astype(np.float32)


def silence(seconds: float) -> npt.NDArray[np.int16]:
    return np.zeros(int(seconds * RATE), np.int16)


def white_noise(seconds: float, level: float = 0.2, seed: int = 7) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    noise = rng.uniform(-level, level, int(seconds * RATE)) * 32767
    return noise.astype(np.int16)


def with_pauses(
    parts: Sequence[npt.NDArray[np.int16]], pause: float = 1.0
) -> npt.NDArray[np.int16]:
    """The parts one after the other, with ``pause`` seconds of silence around each."""
    gap = silence(pause)
    return np.concatenate([gap, *(piece for part in parts for piece in (part, gap))])


def encode(samples: npt.NDArray[np.int16]) -> list[bytes]:
    """20 ms Opus packets, as a browser sends them (48 kHz, mono, 32 kbit/s)."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = 32000
    codec.time_base = fractions.Fraction(1, RATE)
    packets: list[bytes] = []
    padded = np.concatenate([samples, np.zeros(-len(samples) % PACKET, np.int16)])
    for index in range(len(padded) // PACKET):
        frame = av.AudioFrame.from_ndarray(
            padded[None, index * PACKET : (index + 1) * PACKET], format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        frame.pts = index * PACKET
        frame.time_base = fractions.Fraction(1, RATE)
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    return packets


def microphone(participant_id: str, mime_type: str = "audio/opus") -> TrackPublished:
    return TrackPublished(
        participant_id, f"{participant_id}/microphone", "audio", "microphone", mime_type
    )


@dataclass
class Speaker:
    """Sends one track's packets to a frame handler, as the router would."""

    handler: FrameHandler
    packets: Sequence[bytes]
    #: The meeting time (event loop seconds) of the track's timestamp 0.
    epoch: float

    async def play(self, speed: float = 1.0, burst: int = 5) -> None:
        """Hand every packet over, ``speed`` times faster than real time (``burst``
        packets at a time), with the arrival times a real-time sender would give them."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index, packet in enumerate(self.packets):
            timestamp = index * PACKET
            self.handler(MediaFrame(packet, timestamp, True, self.epoch + timestamp / RATE))
            if index % burst == burst - 1:
                due = started + (index + 1) * PACKET / RATE / speed
                await asyncio.sleep(max(0.0, due - loop.time()))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference's length, case and punctuation aside."""
    ref, hyp = normalise(reference).split(), normalise(hypothesis).split()
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        current = [i]
        for j, other in enumerate(hyp, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other))
            )
        previous = current
    return previous[-1] / max(1, len(ref))
