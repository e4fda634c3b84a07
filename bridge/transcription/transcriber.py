"""The transcriber: a receive-only listener of a meeting that writes down who said what.

It is a :class:`~bridge.meeting.media.MediaSink`: the router offers it every track, and it
takes microphones (Opus). Each participant sends their own microphone, so each text is
attributed to its speaker without diarization. The work happens in three places:

1. on the event loop, a frame handler only queues each packet (and notes the meeting
   time of the track's timestamp 0);
2. the listening thread (:mod:`~bridge.transcription.listening`) decodes the packets and
   cuts utterances with the VAD;
3. a bounded pool of worker threads runs the engine on each utterance; the text comes
   back to ``on_segment`` on the event loop.

Nothing waits for the next stage: a stage that is full refuses work, and the transcriber
says it is *limited* (``on_limited`` with a plain sentence, and ``None`` when it recovers)
rather than letting captions drift further and further behind or slowing the meeting.
It is also limited when more people have a microphone than ``max_speakers``: the others
wait for a slot (in the order their tracks started) and are not transcribed until then.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec

from ..meeting.media import FrameHandler, MediaFrame, TrackPublished
from .priority import lower_priority

if TYPE_CHECKING:
    from .engines import Engine
    from .listening import Listening
    from .vad import Cutting, Utterance

#: The clock rate of Opus timestamps, and the VAD's sample rate.
_OPUS_CLOCK = 48000
_SAMPLE_RATE = 16000

log = logging.getLogger("visio.transcription")
P = ParamSpec("P")


@dataclass(frozen=True, slots=True)
class Segment:
    """What one participant said: ``start`` and ``end`` in seconds on the meeting clock
    (the event loop's), as estimated from when their audio arrived."""

    participant_id: str
    text: str
    start: float
    end: float


@dataclass(slots=True)
class _Track:
    key: int
    track_id: str
    participant_id: str
    #: Whether it has a slot (is transcribed) or waits for one.
    active: bool
    #: The meeting time of the track's timestamp 0: the earliest any packet could have
    #: been sent, so the packet that arrived fastest sets it.
    epoch: float = math.inf


class Transcriber:
    """Transcribes the microphones of one meeting (see the module docstring).

    Make it on the event loop, then attach it with ``router.add_sink(transcriber)``;
    call :meth:`stop` when done with it (after ``remove_sink``). ``engine`` comes from
    :func:`~bridge.transcription.engines.load_engine`; ``language`` is the meeting's
    (ISO 639-1); ``workers`` how many utterances are decoded at once (give the engine
    the same number); ``max_waiting`` how many utterances may wait for a worker before
    new ones are dropped. Needs the ``transcription`` extra (for the VAD).
    """

    def __init__(
        self,
        engine: Engine,
        on_segment: Callable[[Segment], None],
        *,
        language: str = "fr",
        on_limited: Callable[[str | None], None] | None = None,
        max_speakers: int = 4,
        workers: int = 1,
        max_waiting: int = 4,
        cutting: Cutting | None = None,
        recovery: float = 30.0,
    ) -> None:
        from .listening import Listening

        if max_speakers < 1 or workers < 1 or max_waiting < 0:
            raise ValueError("A transcriber needs a speaker and a worker at least.")
        self._loop = asyncio.get_running_loop()
        self._engine = engine
        self._language = language
        self._on_segment = on_segment
        self._on_limited = on_limited
        self._max_speakers = max_speakers
        self._capacity = workers + max_waiting
        #: Seconds without a drop before the transcriber says it caught up.
        self._recovery = recovery
        self._keys = itertools.count()
        #: Live tracks taken, by track id.
        self._tracks: dict[str, _Track] = {}
        #: Tracks by listening key, until the listening thread is done with them.
        self._heard: dict[int, _Track] = {}
        self._waiting: list[_Track] = []
        self._jobs: set[asyncio.Task[None]] = set()
        self._last_drop = -math.inf
        self._recovery_timer: asyncio.TimerHandle | None = None
        self._limited: str | None = None
        self._stopping = False
        self._listened: asyncio.Future[None] = self._loop.create_future()
        self._pool = ThreadPoolExecutor(
            workers, thread_name_prefix="transcription", initializer=lower_priority
        )
        self._listening: Listening = Listening(
            self._threadsafe(self._utterance),
            self._threadsafe(self._forget),
            self._threadsafe(self._stopped),
            cutting=cutting,
        )

    @property
    def limited(self) -> str | None:
        """Why some speech is not transcribed now, in plain words; None when all is."""
        return self._limited

    def track_started(self, track: TrackPublished) -> FrameHandler | None:
        """Take Opus microphones; the first ``max_speakers`` get a slot, the others wait."""
        if self._stopping or track.kind != "audio" or track.source != "microphone":
            return None
        if track.mime_type.lower() != "audio/opus":
            return None
        if track.track_id in self._tracks:  # published again without an end: start afresh
            self.track_ended(track.track_id)
        active = sum(1 for taken in self._tracks.values() if taken.active)
        record = _Track(next(self._keys), track.track_id, track.participant_id, active=False)
        self._tracks[track.track_id] = record
        self._heard[record.key] = record
        if active < self._max_speakers:
            record.active = True
        else:
            self._waiting.append(record)
            self._update_limited()
        return functools.partial(self._frame, record)

    def track_ended(self, track_id: str) -> None:
        """A taken track ended: its last utterance is still transcribed, and the first
        waiting track gets its slot."""
        record = self._tracks.pop(track_id, None)
        if record is None:
            return
        if record.active:
            self._listening.end(record.key)
            if self._waiting:
                self._waiting.pop(0).active = True
        else:
            self._waiting.remove(record)
            self._heard.pop(record.key, None)
        self._update_limited()

    async def stop(self, grace: float = 10.0) -> None:
        """Take no more audio, transcribe what was heard and queued for up to ``grace``
        seconds (what is left then is dropped), and stop the threads. Calling it again
        does nothing."""
        if self._stopping:
            return
        self._stopping = True
        deadline = self._loop.time() + grace
        self._listening.stop()
        try:
            await asyncio.wait_for(asyncio.shield(self._listened), grace)
        except TimeoutError:
            log.warning("the listening thread did not finish in %.0f s", grace)
        jobs = set(self._jobs)
        if jobs:
            _done, late = await asyncio.wait(jobs, timeout=max(0.0, deadline - self._loop.time()))
            for job in late:
                job.cancel()
            if late:
                log.warning("stopped with %d utterances not transcribed", len(late))
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._recovery_timer is not None:
            self._recovery_timer.cancel()

    def _frame(self, record: _Track, frame: MediaFrame) -> None:
        if not record.active or self._stopping:
            return
        record.epoch = min(record.epoch, frame.arrival - frame.timestamp / _OPUS_CLOCK)
        if not self._listening.put(record.key, frame.data, frame.timestamp):
            self._dropped()

    def _utterance(self, key: int, utterance: Utterance) -> None:
        record = self._heard.get(key)
        if record is None or self._listened.done():
            return
        if len(self._jobs) >= self._capacity:
            self._dropped()
            return
        start = record.epoch + utterance.start / _SAMPLE_RATE
        end = record.epoch + utterance.end / _SAMPLE_RATE
        job = self._loop.create_task(
            self._transcribe(record.participant_id, utterance, start, end)
        )
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _transcribe(
        self, participant_id: str, utterance: Utterance, start: float, end: float
    ) -> None:
        try:
            text = await self._loop.run_in_executor(
                self._pool, self._engine.transcribe, utterance.samples, self._language
            )
        except Exception:
            log.exception("the engine failed on %.1f s of %s", end - start, participant_id)
            return
        text = text.strip()
        if not text:
            return
        try:
            self._on_segment(Segment(participant_id, text, start, end))
        except Exception:
            log.exception("on_segment failed")

    def _forget(self, key: int) -> None:
        self._heard.pop(key, None)

    def _stopped(self) -> None:
        if not self._listened.done():
            self._listened.set_result(None)

    def _dropped(self) -> None:
        """Speech was dropped for want of CPU: say so until it stops for a while."""
        self._last_drop = self._loop.time()
        if self._recovery_timer is None:
            log.warning("transcription is behind: dropping speech")
            self._recovery_timer = self._loop.call_later(self._recovery, self._check_recovery)
            self._update_limited()

    def _check_recovery(self) -> None:
        quiet = self._loop.time() - self._last_drop
        if quiet < self._recovery:
            self._recovery_timer = self._loop.call_later(
                self._recovery - quiet, self._check_recovery
            )
            return
        self._recovery_timer = None
        log.info("transcription caught up")
        self._update_limited()

    def _update_limited(self) -> None:
        reasons = []
        if self._waiting:
            speakers = len(self._tracks)
            reasons.append(
                f"Only {self._max_speakers} of {speakers} microphones are transcribed at once."
            )
        if self._recovery_timer is not None:
            reasons.append("The server is short of CPU: some speech was not transcribed.")
        limited = " ".join(reasons) or None
        if limited == self._limited:
            return
        self._limited = limited
        if self._on_limited is not None:
            try:
                self._on_limited(limited)
            except Exception:
                log.exception("on_limited failed")

    def _threadsafe(self, callback: Callable[P, None]) -> Callable[P, None]:
        """``callback`` called on the event loop, from any thread; dropped once the loop
        is closed (the bridge is gone, and so is whoever wanted the result)."""

        def call(*args: P.args, **kwargs: P.kwargs) -> None:
            try:
                self._loop.call_soon_threadsafe(functools.partial(callback, *args, **kwargs))
            except RuntimeError:
                pass

        return call
