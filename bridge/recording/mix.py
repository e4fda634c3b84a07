"""The meeting's audio in one file: every audio track decoded, summed on the shared
timeline, and encoded again as Opus.

Runs in the recorder's writer thread only. Memory stays bounded however long the
meeting: decoded audio is summed into 20 ms blocks keyed by their place on the timeline,
and a block is encoded and forgotten as soon as every live track has sent audio past it,
or :data:`LAG_SECONDS` after it at the latest (a muted or silent track sends little or
nothing, and must not hold the others back). Audio arriving later than that misses the
mix (its track's own file still has it). Stretches where no one sent audio are encoded
as silence, so the mix plays continuously along the meeting's timeline.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from av.audio.codeccontext import AudioCodecContext
from av.audio.stream import AudioStream
from av.container import OutputContainer

from .logs import Log
from .names import abandon, create_file
from .opus import SAMPLE_RATE
from .recorded import RecordedFile

#: The most a block waits for late tracks before it is encoded, in seconds.
LAG_SECONDS = 2.0
#: A track that starts now is placed at about now: blocks this close to the newest
#: arrival are not flushed on the word of the tracks already there.
JOIN_MARGIN_SECONDS = 0.2
#: Samples per block: one 20 ms Opus frame at 48 kHz.
BLOCK = 960
#: The mix's bit rate: mono, above the 24-32 kbit/s at which one voice is already clear
#: in Opus, since several share it and every word may matter later.
BIT_RATE = 48000
#: The most blocks encoded in one frame (one second).
_RUN = 50
_TIME_BASE = Fraction(1, SAMPLE_RATE)

Samples = npt.NDArray[np.int16]


class MixInput:
    """One audio track instance feeding the mix."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.decoder: AudioCodecContext | None = None
        #: Where the track's decoded audio ends on the timeline (samples), once it sent.
        self.end: int | None = None
        self.live = True
        #: Samples that came too late for the mix.
        self.late = 0


class Mix:
    """The audio mix of one recording (see the module docstring)."""

    def __init__(self, directory: Path, log: Log) -> None:
        self._directory = directory
        self._log = log
        self._inputs: list[MixInput] = []
        self._blocks: dict[int, npt.NDArray[np.int32]] = {}
        #: The first block not encoded yet; None until some audio came.
        self._next: int | None = None
        #: Where the audio of the tracks that ended ends (samples).
        self._ended = 0
        self._first: int | None = None
        self._path: Path | None = None
        self._container: OutputContainer | None = None
        self._stream: AudioStream | None = None
        self._broken = False
        #: Encoded stretches that could not be written.
        self._failures = 0

    def add_input(self, label: str) -> MixInput:
        """A new audio track to mix."""
        mix_input = MixInput(label)
        self._inputs.append(mix_input)
        return mix_input

    def end_input(self, mix_input: MixInput) -> None:
        """The track ended: nothing waits for it any more."""
        if not mix_input.live:
            return
        mix_input.live = False
        mix_input.decoder = None
        self._inputs.remove(mix_input)
        if mix_input.end is not None:
            self._ended = max(self._ended, mix_input.end)
        if mix_input.late:
            self._log.warning(
                "%s: %.1f s of audio came too late for the mix",
                mix_input.label,
                mix_input.late / SAMPLE_RATE,
            )

    def add(self, mix_input: MixInput, packet: bytes, position: int) -> None:
        """Decode an Opus packet of a track and add it at ``position`` (samples on the
        timeline). Raises what the decoder raises on a bad packet."""
        if mix_input.decoder is None:
            mix_input.decoder = _decoder()
        for frame in mix_input.decoder.decode(av.Packet(packet)):
            samples = _mono_s16(frame)
            self._place(mix_input, samples, position)
            position += len(samples)

    def _place(self, mix_input: MixInput, samples: Samples, position: int) -> None:
        if not len(samples):
            return
        if self._next is None:
            self._next = position // BLOCK
        end = position + len(samples)
        mix_input.end = end if mix_input.end is None else max(mix_input.end, end)
        floor = self._next * BLOCK
        if position < floor:
            cut = min(floor - position, len(samples))
            mix_input.late += cut
            samples, position = samples[cut:], position + cut
        while len(samples):
            index, offset = divmod(position, BLOCK)
            take = min(BLOCK - offset, len(samples))
            block = self._blocks.get(index)
            if block is None:
                block = self._blocks[index] = np.zeros(BLOCK, np.int32)
            block[offset : offset + take] += samples[:take]
            samples, position = samples[take:], position + take

    def advance(self, now: int) -> None:
        """Encode what is complete, ``now`` being the newest arrival's position on the
        timeline (samples)."""
        if self._next is None:
            return
        ends = [i.end for i in self._inputs if i.live and i.end is not None]
        ready = min(ends) if ends else max(self._ended, now)
        join_margin = round(JOIN_MARGIN_SECONDS * SAMPLE_RATE)
        target = max(min(ready, now - join_margin), now - round(LAG_SECONDS * SAMPLE_RATE))
        self._flush(target // BLOCK)

    def finish(self) -> RecordedFile | None:
        """Encode everything that came and close the file; its description, or None
        when no audio came."""
        for mix_input in list(self._inputs):
            self.end_input(mix_input)
        if self._next is not None:
            self._flush(-(-self._ended // BLOCK))
        if self._container is not None:
            try:
                assert self._stream is not None
                self._container.mux(self._stream.encode(None))
                self._container.close()
            except Exception:
                self._log.exception("finishing the mix failed")
            self._container = None
        if self._failures:
            self._log.warning(
                "%d stretch(es) of the mix (a second at most each) could not be written",
                self._failures,
            )
        if self._path is None or self._first is None or self._next is None:
            return None
        try:
            size = self._path.stat().st_size
        except OSError:
            self._log.exception("%s is gone", self._path)
            return None
        return RecordedFile(
            path=self._path,
            kind="mix",
            participant_id=None,
            name="",
            source=None,
            mime_type="audio/webm",
            size=size,
            duration_ms=(self._next * BLOCK - self._first) * 1000 // SAMPLE_RATE,
            start_ms=self._first * 1000 // SAMPLE_RATE,
        )

    def _flush(self, until: int) -> None:
        """Encode the blocks before block ``until``."""
        assert self._next is not None
        while self._next < until:
            count = min(until - self._next, _RUN)
            run = np.zeros(count * BLOCK, np.int32)
            for n in range(count):
                block = self._blocks.pop(self._next + n, None)
                if block is not None:
                    run[n * BLOCK : (n + 1) * BLOCK] = block
            self._encode(np.clip(run, -32768, 32767).astype(np.int16), self._next * BLOCK)
            self._next += count

    def _encode(self, samples: Samples, position: int) -> None:
        if self._broken:
            return
        if self._container is None:
            try:
                self._open()
            except Exception:
                self._broken = True
                self._log.exception("could not create the mix; it is not recorded")
                self._discard()
                return
            self._first = position
        assert self._container is not None and self._stream is not None
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = position
        frame.time_base = _TIME_BASE
        try:
            self._container.mux(self._stream.encode(frame))
        except Exception:
            # A full disk fails every write: one line, then the count at the end.
            self._failures += 1
            if self._failures == 1:
                self._log.exception("writing the mix failed")

    def _discard(self) -> None:
        abandon(self._container, self._path)
        self._container, self._path = None, None

    def _open(self) -> None:
        self._path = create_file(self._directory, "mix", ".webm", numbered=False)
        self._container = av.open(str(self._path), "w", format="webm")
        self._container.metadata["title"] = "Meeting audio"
        stream = self._container.add_stream("libopus", rate=SAMPLE_RATE)
        stream.layout = "mono"
        stream.bit_rate = BIT_RATE
        stream.time_base = _TIME_BASE
        self._stream = stream
        self._log.info("mixing the meeting's audio into %s", self._path.name)


def _decoder() -> AudioCodecContext:
    decoder = av.CodecContext.create("libopus", "r")
    assert isinstance(decoder, AudioCodecContext)
    decoder.sample_rate = SAMPLE_RATE
    # libopus downmixes stereo packets itself when asked for one channel.
    decoder.layout = "mono"
    return decoder


def _mono_s16(frame: av.AudioFrame) -> Samples:
    """A decoded frame's samples as mono 16-bit, whatever format the decoder chose."""
    channels = len(frame.layout.channels)
    array = frame.to_ndarray()
    # Planar: one row per channel; packed: one row of interleaved samples.
    rows = array.reshape(channels, -1) if frame.format.is_planar else array.reshape(-1, channels).T
    if rows.dtype.kind == "f":
        rows = rows * 32767.0
    mono = rows.mean(axis=0) if channels > 1 else rows[0]
    clipped: Samples = np.clip(mono, -32768, 32767).astype(np.int16)
    return clipped
