"""Real encoded media for the recorder tests (libvpx, libx264, libopus through PyAV),
and ways to read back what the recorder wrote."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
from av.video.codeccontext import VideoCodecContext

RATE = 48000
OPUS_FRAME = 960


@dataclass(frozen=True)
class Encoded:
    """One encoded frame as a publisher sends it."""

    data: bytes
    keyframe: bool


def _picture(width: int, height: int, index: int) -> av.VideoFrame:
    """A moving gradient with some texture: cheap to make, real work to encode."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack(
        [(x * 2 + index * 5) % 256, (y * 3 + index * 3) % 256, ((x ^ y) + index) % 256], axis=-1
    ).astype(np.uint8)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


@functools.cache
def vp8_frames(
    count: int, width: int = 176, height: int = 144, gop: int = 10
) -> tuple[Encoded, ...]:
    """``count`` VP8 frames at 30 frames/s, a key frame every ``gop``."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.bit_rate = 300_000
    encoder.gop_size = gop
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    return _encode_video(encoder, count, width, height)


@functools.cache
def h264_frames(count: int, width: int, height: int, profile: str) -> tuple[Encoded, ...]:
    """``count`` H.264 access units (Annex B, parameter sets with every IDR, as browsers
    send them); skips the test when PyAV has no libx264."""
    try:
        encoder = av.CodecContext.create("libx264", "w")
    except Exception:  # pragma: no cover - depends on the PyAV build
        pytest.skip("PyAV has no libx264 encoder")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.gop_size = 10
    encoder.options = {
        "profile": profile,
        "preset": "ultrafast",
        "tune": "zerolatency",
        "repeat-headers": "1",
    }
    return _encode_video(encoder, count, width, height)


def _encode_video(
    encoder: VideoCodecContext, count: int, width: int, height: int
) -> tuple[Encoded, ...]:
    frames: list[Encoded] = []
    for index in range(count):
        picture = _picture(width, height, index)
        picture.pts = index
        frames += [Encoded(bytes(p), p.is_keyframe) for p in encoder.encode(picture)]
    frames += [Encoded(bytes(p), p.is_keyframe) for p in encoder.encode(None)]
    assert len(frames) == count
    return tuple(frames)


def tone(seconds: float, frequency: float, amplitude: float = 0.3) -> npt.NDArray[np.int16]:
    t = np.arange(round(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * frequency * t) * amplitude * 32767).astype(np.int16)


def silence(seconds: float) -> npt.NDArray[np.int16]:
    return np.zeros(round(seconds * RATE), np.int16)


def opus_packets(samples: npt.NDArray[np.int16], stereo: bool = False) -> list[bytes]:
    """20 ms Opus packets of mono samples (sent as stereo when ``stereo``)."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = RATE
    encoder.layout = "stereo" if stereo else "mono"
    encoder.format = "s16"
    encoder.bit_rate = 64000 if stereo else 32000
    packets: list[bytes] = []
    for start in range(0, len(samples) - OPUS_FRAME + 1, OPUS_FRAME):
        chunk = samples[start : start + OPUS_FRAME]
        array = np.stack([chunk, chunk], axis=1).reshape(1, -1) if stereo else chunk.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(array, format="s16", layout=encoder.layout.name)
        frame.sample_rate = RATE
        frame.pts = start
        packets += [bytes(p) for p in encoder.encode(frame)]
    packets += [bytes(p) for p in encoder.encode(None)]
    return packets


@dataclass(frozen=True)
class Demuxed:
    codec: str
    width: int
    height: int
    extradata: bytes
    packets: list[bytes]
    #: Packet timestamps in seconds.
    times: list[float]
    keyframes: list[bool]


def demux(path: Path) -> Demuxed:
    """The one stream of a file, packet by packet."""
    with av.open(str(path)) as container:
        assert len(container.streams) == 1
        stream = container.streams[0]
        context = stream.codec_context
        packets, times, keys = [], [], []
        for packet in container.demux(stream):
            if packet.size:
                packets.append(bytes(packet))
                assert packet.pts is not None and packet.time_base is not None
                times.append(float(packet.pts * packet.time_base))
                keys.append(packet.is_keyframe)
        return Demuxed(
            context.name,
            getattr(context, "width", 0),
            getattr(context, "height", 0),
            context.extradata or b"",
            packets,
            times,
            keys,
        )


def decode_audio(path: Path) -> tuple[float, npt.NDArray[np.float64]]:
    """(start in seconds, mono samples as floats in [-1, 1]) of an audio file."""
    chunks: list[npt.NDArray[np.float64]] = []
    start: float | None = None
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        for frame in container.decode(audio=0):
            if start is None:
                assert frame.pts is not None and frame.time_base is not None
                start = float(frame.pts * frame.time_base)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.float64))
    assert start is not None
    return start, np.concatenate(chunks)


def names_in(folder: Path) -> list[str]:
    """The names of what a folder holds, sorted."""
    return sorted(p.name for p in folder.iterdir())


def title_of(path: Path) -> str:
    """The title a file's metadata gives."""
    with av.open(str(path)) as container:
        return container.metadata.get("title", "")


def rms(samples: npt.NDArray[np.float64]) -> float:
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


def ffprobe(path: Path) -> dict[str, Any]:
    """What ffprobe (Debian's ffmpeg) reads in a file; skips the test without it,
    except on CI, which installs it (tests/devtools/checks.py)."""
    tool = shutil.which("ffprobe")
    if tool is None:
        if os.environ.get("CI") != "true":
            pytest.skip("ffprobe (Debian package ffmpeg) is not installed")
        raise AssertionError("ffprobe (Debian package ffmpeg) is not installed")
    result = subprocess.run(
        [tool, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    probed: dict[str, Any] = json.loads(result.stdout)
    return probed
