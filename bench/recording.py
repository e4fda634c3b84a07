"""Recorder cost: CPU seconds per minute of recorded media.

    .venv/bin/python bench/recording.py [--minutes 1] [--speakers 1 4 8]

Feeds a :class:`bridge.recording.Recorder` pre-encoded media as fast as it takes it (a
fake clock stamps the frames as if they came in real time), then stops it, and prints
the process CPU seconds that cost per minute of media:

- one VP8 track at 1 Mbit/s, 640x360, 30 frames/s (muxed as received, no mix);
- N Opus tracks at 32 kbit/s, all speaking at once: their files and the mix, and the
  mix alone (decode, sum, encode; measured on :class:`bridge.recording.mix.Mix`).

The encoders run before the clock starts; a clip of 10 s is looped (muxing does not
care that the looped video would not decode cleanly).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.meeting.media import MediaFrame, TrackPublished
from bridge.recording import Recorder
from bridge.recording.mix import Mix

CLIP_SECONDS = 10


def vp8_clip() -> list[tuple[bytes, bool]]:
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 640, 360, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.bit_rate = 1_000_000
    encoder.gop_size = 1 << 30
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    frames: list[tuple[bytes, bool]] = []
    y, x = np.mgrid[0:360, 0:640]
    for n in range(30 * CLIP_SECONDS):
        rgb = np.stack([(x + 3 * n) % 256, (y + n) % 256, (x ^ y) % 256], -1).astype(np.uint8)
        noise = np.random.default_rng(n).integers(0, 24, rgb.shape, dtype=np.uint8)
        picture = av.VideoFrame.from_ndarray(rgb + noise, format="rgb24").reformat(
            format="yuv420p"
        )
        picture.pts = n
        frames += [(bytes(p), p.is_keyframe) for p in encoder.encode(picture)]
    return frames


def opus_clip(frequency: float) -> list[bytes]:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "mono", "s16"
    encoder.bit_rate = 32000
    t = np.arange(48000 * CLIP_SECONDS) / 48000
    # A tone that comes and goes four times a second, like syllables.
    pcm = (np.sin(2 * np.pi * frequency * t) * np.abs(np.sin(2 * np.pi * 2 * t)) * 12000).astype(
        np.int16
    )
    packets: list[bytes] = []
    for start in range(0, len(pcm), 960):
        frame = av.AudioFrame.from_ndarray(pcm[start : start + 960].reshape(1, -1), "s16", "mono")
        frame.sample_rate, frame.pts = 48000, start
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets


def timeline(
    clip: list[tuple[bytes, bool]], seconds: float, rate: int, per_second: int
) -> list[tuple[bytes, bool, int, float]]:
    """The clip looped over ``seconds``: (data, key frame, timestamp, arrival)."""
    step = rate // per_second
    count = int(seconds * per_second)
    return [
        (clip[n % len(clip)][0], clip[n % len(clip)][1] and n == 0, n * step, n / per_second)
        for n in range(count)
    ]


async def measure(
    tracks: list[tuple[TrackPublished, list[tuple[bytes, bool, int, float]]]],
) -> float:
    """Process CPU seconds to record these tracks."""
    clock = [0.0]
    with tempfile.TemporaryDirectory() as folder:
        before = time.process_time()
        recorder = Recorder(
            Path(folder), name_of=str, clock=lambda: clock[0], queue_frames=1_000_000
        )
        handlers = [recorder.track_started(track) for track, _ in tracks]
        merged = sorted(
            (frame[3], i, frame) for i, (_, frames) in enumerate(tracks) for frame in frames
        )
        for arrival, i, (data, key, timestamp, _) in merged:
            clock[0] = arrival
            handler = handlers[i]
            assert handler is not None
            handler(MediaFrame(data, timestamp, key, arrival))
        files = await recorder.stop()
        cpu = time.process_time() - before
        assert recorder.dropped == 0 and files
    return cpu


def track(participant: str, kind: str, source: str, mime: str) -> TrackPublished:
    return TrackPublished(participant, f"{participant}/{source}", kind, source, mime)  # type: ignore[arg-type]


async def main(minutes: float, speakers: list[int]) -> None:
    seconds = minutes * 60
    video = timeline(vp8_clip(), seconds, 90000, 30)
    voices = [[(p, True) for p in opus_clip(200 + 40 * n)] for n in range(max(speakers))]
    per_minute = 1 / minutes
    megabits = sum(len(f[0]) for f in video) * 8 / seconds / 1e6
    cpu = await measure([(track("a", "video", "camera", "video/VP8"), video)])
    print(f"VP8 track ({megabits:.2f} Mbit/s): {cpu * per_minute:.3f} CPU s per minute")

    audio = [timeline(voice, seconds, 48000, 50) for voice in voices]
    for count in speakers:
        tracks = [
            (track(f"p{n}", "audio", "microphone", "audio/opus"), audio[n]) for n in range(count)
        ]
        cpu = await measure(tracks)
        mixing = measure_mix(audio[:count])
        print(
            f"{count} Opus track(s) at 32 kbit/s, files and mix: {cpu * per_minute:.3f} CPU s "
            f"per minute, of which the mix {mixing * per_minute:.3f} "
            f"({mixing * per_minute / count:.3f} per speaker)"
        )


def measure_mix(tracks: list[list[tuple[bytes, bool, int, float]]]) -> float:
    """Process CPU seconds of the mix alone (decode, sum, encode) for these tracks."""
    with tempfile.TemporaryDirectory() as folder:
        before = time.process_time()
        mix = Mix(Path(folder), logging.getLogger("bench"))
        inputs = [mix.add_input(str(n)) for n in range(len(tracks))]
        merged = sorted((f[3], i, f) for i, frames in enumerate(tracks) for f in frames)
        for arrival, i, (data, _, timestamp, _) in merged:
            mix.add(inputs[i], data, timestamp)
            mix.advance(round(arrival * 48000))
        assert mix.finish() is not None
        return time.process_time() - before


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--speakers", type=int, nargs="+", default=[1, 4, 8])
    arguments = parser.parse_args()
    asyncio.run(main(arguments.minutes, arguments.speakers))
