"""Synthetic media sources for tests, benchmarks and load checks (no camera needed).

- :class:`SyntheticVideoTrack` encodes a moving pattern to VP8 as it plays and keeps the
  encoded frames it sent, so a test can compare them with what a subscriber got.
- :class:`LoopedVideoTrack` plays a clip encoded once by :func:`encode_vp8_clip`, so a
  benchmark's publisher costs next to nothing.
- :class:`LoopedOpusTrack` does the same for Opus; :class:`ToneTrack` yields raw audio
  (a tone or silence) that aiortc encodes, adding RFC 6464 audio levels.

The video tracks return ``av.Packet`` objects, which aiortc's sender packs as they are, and
answer keyframe requests: install :meth:`request_keyframe` with
:func:`bridge.media.aiortc_hooks.on_keyframe_request` on their sender.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import os
from collections import deque
from dataclasses import dataclass
from typing import cast

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av.video.codeccontext import VideoCodecContext

VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
OPUS_FRAME = 960  # 20 ms
_VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
_AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)


def vp8_encoder(width: int, height: int, fps: int, bitrate: int) -> VideoCodecContext:
    """A real-time VP8 encoder that makes keyframes only on request (and first)."""
    codec = cast(VideoCodecContext, av.CodecContext.create("libvpx", "w"))
    codec.width = width
    codec.height = height
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = bitrate
    codec.time_base = fractions.Fraction(1, fps)
    codec.framerate = fractions.Fraction(fps, 1)
    codec.gop_size = 1 << 30
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
        "minrate": str(bitrate),
        "maxrate": str(bitrate),
        "bufsize": str(bitrate),
    }
    return codec


def pattern_frame(width: int, height: int, index: int) -> av.VideoFrame:
    """A frame of a moving pattern with some noise, so the encoder has work to do."""
    row = bytes((x * 3) & 0xFF for x in range(2 * width))
    shift = (index * 4) % width
    noise_rows = height // 12
    luma = bytearray()
    for y in range(height):
        start = (shift + y) % width
        luma += row[start : start + width]
    top = (index * 3) % (height - noise_rows)
    luma[top * width : (top + noise_rows) * width] = os.urandom(noise_rows * width // 8) * 8
    frame = av.VideoFrame(width, height, "yuv420p")
    frame.planes[0].update(bytes(luma))
    chroma = bytes([(index * 2) & 0xFF]) * frame.planes[1].buffer_size
    frame.planes[1].update(chroma)
    frame.planes[2].update(chroma)
    return frame


def _encode(codec: VideoCodecContext, frame: av.VideoFrame, index: int, key: bool) -> bytes:
    frame.pts = index
    frame.time_base = codec.time_base
    frame.pict_type = av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
    return b"".join(bytes(p) for p in codec.encode(frame))


class _PacedTrack(MediaStreamTrack):
    """Paces ``recv()`` at a fixed rate on the event loop's clock."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self._period = 1.0 / rate
        self._start: float | None = None
        self._count = 0

    async def _next_slot(self) -> int:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._count += 1
            await asyncio.sleep(max(0.0, self._start + self._count * self._period - loop.time()))
        return self._count


class _VideoTrack(_PacedTrack):
    """A paced video track that returns encoded packets and answers keyframe requests."""

    kind = "video"

    def __init__(self, fps: int) -> None:
        super().__init__(fps)
        self._ticks = VIDEO_CLOCK // fps
        self._keyframe = True
        #: Keyframe requests received.
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        """Make the next frame a keyframe (install on the sender as PLI handler)."""
        self.keyframe_requests += 1
        self._keyframe = True

    def _take_keyframe(self) -> bool:
        key, self._keyframe = self._keyframe, False
        return key

    def _packet(self, data: bytes, index: int) -> av.Packet:
        packet = av.Packet(data)
        packet.pts = index * self._ticks
        packet.time_base = _VIDEO_TIME_BASE
        return packet


class SyntheticVideoTrack(_VideoTrack):
    """Encodes a moving pattern to VP8 as it plays; ``sent`` keeps the encoded frames."""

    def __init__(
        self, width: int = 160, height: int = 120, fps: int = 30, bitrate: int = 200_000
    ) -> None:
        super().__init__(fps)
        self._codec = vp8_encoder(width, height, fps, bitrate)
        self._size = (width, height)
        #: The encoded frames sent, newest last (bounded).
        self.sent: deque[bytes] = deque(maxlen=2000)

    async def recv(self) -> av.Packet:
        index = await self._next_slot()
        key = self._take_keyframe()
        data = _encode(self._codec, pattern_frame(*self._size, index), index, key)
        self.sent.append(data)
        return self._packet(data, index)


@dataclass(frozen=True)
class Vp8Clip:
    """A clip encoded once: ``frames`` plays in a loop, ``keyframes[i]`` replaces
    ``frames[i]`` when a keyframe was requested."""

    fps: int
    frames: tuple[bytes, ...]
    keyframes: tuple[bytes, ...]

    @property
    def bitrate(self) -> float:
        """Average bits per second of the loop."""
        return sum(map(len, self.frames)) * 8 * self.fps / len(self.frames)


def encode_vp8_clip(
    width: int = 640, height: int = 360, fps: int = 30, bitrate: int = 1_000_000, seconds: int = 4
) -> Vp8Clip:
    """Encode a looping clip, once, at about ``bitrate`` bits per second.

    The loop holds no keyframe (the first encoded frame is left out), so subscribers only
    get keyframes they or the SFU asked for, as with a real camera.
    """
    count = fps * seconds
    deltas = vp8_encoder(width, height, fps, bitrate)
    intra = vp8_encoder(width, height, fps, bitrate)
    frames, keyframes = [], []
    for index in range(count + 1):
        frame = pattern_frame(width, height, index)
        frames.append(_encode(deltas, frame, index, index == 0))
        keyframes.append(_encode(intra, frame, index, True))
    return Vp8Clip(fps, tuple(frames[1:]), tuple(keyframes[1:]))


class LoopedVideoTrack(_VideoTrack):
    """Plays a :class:`Vp8Clip` in a loop; a keyframe request swaps in a keyframe."""

    def __init__(self, clip: Vp8Clip) -> None:
        super().__init__(clip.fps)
        self._clip = clip

    async def recv(self) -> av.Packet:
        index = await self._next_slot()
        position = index % len(self._clip.frames)
        frames = self._clip.keyframes if self._take_keyframe() else self._clip.frames
        return self._packet(frames[position], index)


def _tone(samples: int, start: int, frequency: float = 440.0, amplitude: int = 12000) -> bytes:
    return b"".join(
        int(amplitude * math.sin(2 * math.pi * frequency * (start + i) / AUDIO_RATE)).to_bytes(
            2, "little", signed=True
        )
        for i in range(samples)
    )


def encode_opus_loop(seconds: int = 1) -> tuple[bytes, ...]:
    """Opus packets (20 ms each) of a tone, encoded once."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = AUDIO_RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = 32000
    codec.time_base = _AUDIO_TIME_BASE
    packets: list[bytes] = []
    for index in range(seconds * AUDIO_RATE // OPUS_FRAME):
        frame = av.AudioFrame(format="s16", layout="mono", samples=OPUS_FRAME)
        frame.planes[0].update(_tone(OPUS_FRAME, index * OPUS_FRAME))
        frame.sample_rate = AUDIO_RATE
        frame.pts = index * OPUS_FRAME
        frame.time_base = _AUDIO_TIME_BASE
        packets += [bytes(p) for p in codec.encode(frame)]
    return tuple(packets)


class LoopedOpusTrack(_PacedTrack):
    """Plays pre-encoded Opus packets in a loop, one every 20 ms."""

    kind = "audio"

    def __init__(self, packets: tuple[bytes, ...]) -> None:
        super().__init__(AUDIO_RATE / OPUS_FRAME)
        self._packets = packets

    async def recv(self) -> av.Packet:
        index = await self._next_slot()
        packet = av.Packet(self._packets[index % len(self._packets)])
        packet.pts = index * OPUS_FRAME
        packet.time_base = _AUDIO_TIME_BASE
        return packet


class ToneTrack(_PacedTrack):
    """Raw 48 kHz audio, a tone while ``loud`` is true and silence otherwise."""

    kind = "audio"

    def __init__(self, loud: bool = False) -> None:
        super().__init__(AUDIO_RATE / OPUS_FRAME)
        self.loud = loud
        self._silence = bytes(2 * OPUS_FRAME)
        self._tone = _tone(OPUS_FRAME, 0, frequency=500.0)  # 10 whole periods: seamless

    async def recv(self) -> av.AudioFrame:
        index = await self._next_slot()
        frame = av.AudioFrame(format="s16", layout="mono", samples=OPUS_FRAME)
        frame.planes[0].update(self._tone if self.loud else self._silence)
        frame.sample_rate = AUDIO_RATE
        frame.pts = index * OPUS_FRAME
        frame.time_base = _AUDIO_TIME_BASE
        return frame
