"""The listening thread: every transcribed speaker's packets, decoded and cut into
utterances off the event loop.

Decoding Opus and rating 32 ms windows costs about 0.2 ms of CPU per 20 ms packet, too
much to do on the loop for several speakers but little enough for one thread to serve
them all, in arrival order. The loop only puts packets in :class:`Listening`'s queue
(which it bounds: past :attr:`Listening.backlog` packets waiting, new ones are refused and
the caller reports it); utterances go back through ``on_utterance``, called in this
thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .audio import OPUS_CLOCK, SAMPLE_RATE, OpusDecoder
from .priority import lower_priority
from .vad import Cutting, SileroVad, SpeechDetector, Utterance

#: Ticks of the Opus clock per 16 kHz sample.
_TICKS_PER_SAMPLE = OPUS_CLOCK // SAMPLE_RATE
#: A gap in a track's timestamps up to this long (lost packets, a muted sender's
#: discontinuous transmission) is filled with silence; a longer one starts afresh.
MAX_FILLED_GAP = 1.0
#: Timestamps this close to the expected one (resampler rounding) count as on time.
_TOLERANCE = 480

log = logging.getLogger("visio.transcription.listening")


@dataclass(frozen=True, slots=True)
class _Packet:
    speaker: int
    data: bytes
    timestamp: int


@dataclass(frozen=True, slots=True)
class _End:
    speaker: int


class _Stop:
    pass


class _SpeakerAudio:
    """One speaker's decoder and detector, and where its timeline stands."""

    def __init__(self, vad: SileroVad, cutting: Cutting, timestamp: int) -> None:
        self.decoder = OpusDecoder()
        self.detector = SpeechDetector(vad, cutting, start=timestamp // _TICKS_PER_SAMPLE)
        #: The Opus timestamp the next packet should carry.
        self.next_timestamp = timestamp

    def packet(self, data: bytes, timestamp: int) -> list[Utterance]:
        done: list[Utterance] = []
        gap = timestamp - self.next_timestamp
        if gap < -_TOLERANCE:
            return done  # late or repeated: its moment has been heard already
        if gap > MAX_FILLED_GAP * OPUS_CLOCK:
            done.extend(self.detector.skip_to(timestamp // _TICKS_PER_SAMPLE))
        elif gap > _TOLERANCE:
            silence = np.zeros(gap // _TICKS_PER_SAMPLE, np.float32)
            done.extend(self.detector.feed(silence))
        samples = self.decoder.decode(data)
        self.next_timestamp = timestamp + len(samples) * _TICKS_PER_SAMPLE
        done.extend(self.detector.feed(samples))
        return done


class Listening:
    """The thread that turns speakers' packets into utterances.

    ``on_utterance(speaker, utterance)`` and ``on_ended(speaker)`` (after a speaker's
    last utterance) are called in this thread; ``on_stopped()`` once, last.
    """

    def __init__(
        self,
        on_utterance: Callable[[int, Utterance], None],
        on_ended: Callable[[int], None],
        on_stopped: Callable[[], None],
        *,
        cutting: Cutting | None = None,
        backlog: int = 500,
    ) -> None:
        self._vad = SileroVad()
        self._cutting = cutting or Cutting()
        self._on_utterance = on_utterance
        self._on_ended = on_ended
        self._on_stopped = on_stopped
        #: Packets waiting at most (10 s of one speaker's audio by default).
        self.backlog = backlog
        self._queue: queue.SimpleQueue[_Packet | _End | _Stop] = queue.SimpleQueue()
        self._speakers: dict[int, _SpeakerAudio] = {}
        self._thread = threading.Thread(target=self._run, name="transcription-listening")
        self._thread.daemon = True
        self._thread.start()

    def put(self, speaker: int, data: bytes, timestamp: int) -> bool:
        """Queue one packet of a speaker; False when the backlog is full (dropped)."""
        if self._queue.qsize() >= self.backlog:
            return False
        self._queue.put(_Packet(speaker, data, timestamp))
        return True

    def end(self, speaker: int) -> None:
        """A speaker's track ended: finish their utterance and forget them."""
        self._queue.put(_End(speaker))

    def stop(self) -> None:
        """Finish every speaker's utterance, then stop (after what is queued)."""
        self._queue.put(_Stop())

    def _run(self) -> None:
        lower_priority()
        while True:
            item = self._queue.get()
            if isinstance(item, _Stop):
                for speaker in list(self._speakers):
                    self._guarded(_End(speaker))
                self._on_stopped()
                return
            self._guarded(item)

    def _guarded(self, item: _Packet | _End) -> None:
        try:
            if isinstance(item, _End):
                self._end(item.speaker)
            else:
                self._packet(item)
        except Exception:
            # A bad packet or a failing callback loses that speaker a moment, never the
            # thread that serves everyone.
            log.exception("listening failed for speaker %s", item.speaker)

    def _packet(self, packet: _Packet) -> None:
        audio = self._speakers.get(packet.speaker)
        if audio is None:
            audio = self._speakers[packet.speaker] = _SpeakerAudio(
                self._vad, self._cutting, packet.timestamp
            )
        for utterance in audio.packet(packet.data, packet.timestamp):
            self._on_utterance(packet.speaker, utterance)

    def _end(self, speaker: int) -> None:
        audio = self._speakers.pop(speaker, None)
        if audio is not None:
            for utterance in audio.detector.flush():
                self._on_utterance(speaker, utterance)
        self._on_ended(speaker)
