"""Active speaker detection from RFC 6464 audio levels, without decoding any audio.

Levels come from the ``urn:ietf:params:rtp-hdrext:ssrc-audio-level`` RTP header extension
that browsers (and aiortc when it encodes) put on every audio packet: 0 is the loudest,
127 silence, in -dBov. Publishers that do not send it are never considered speaking.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .clock import Clock

# Smoothing of the per-packet level: one packet is 20 ms, so about 200 ms of memory.
_SMOOTHING = 0.1
# A participant whose packets stopped (muted, DTX, gone) stops speaking after this.
_STALE_AFTER = 0.5
# A challenger must be this much louder (dB) than a current speaker who still speaks.
_MARGIN_DB = 6.0
# Levels arrive 50 times a second per publisher; deciding 20 times a second is plenty.
_EVALUATE_EVERY = 0.05


@dataclass(slots=True)
class _Voice:
    loudness: float  # 127 - smoothed level: higher is louder
    updated: float


class ActiveSpeakerDetector:
    """Reports the loudest speaking participant, with hysteresis so it does not flap.

    A participant becomes active speaker after being the loudest speaker for
    ``switch_delay`` seconds, and louder than the current active speaker by a margin if
    that one still speaks. Silence keeps the last active speaker.
    """

    def __init__(
        self,
        on_change: Callable[[str], None],
        clock: Clock,
        *,
        speaking_level: int = 50,
        switch_delay: float = 0.5,
    ) -> None:
        self._on_change = on_change
        self._clock = clock
        self._threshold = 127 - speaking_level
        self._switch_delay = switch_delay
        self._voices: dict[str, _Voice] = {}
        self._candidate: str | None = None
        self._candidate_since = 0.0
        self._evaluated = float("-inf")
        self.active: str | None = None

    def add_level(self, participant_id: str, level: int, packets: int = 1) -> None:
        """Record one audio packet's RFC 6464 level (0..127) for ``participant_id``, or
        one level that stands for ``packets`` packets (a trunk sends one per 100 ms)."""
        now = self._clock.now()
        loudness = 127 - min(max(level, 0), 127)
        voice = self._voices.get(participant_id)
        if voice is None or now - voice.updated > _STALE_AFTER:
            self._voices[participant_id] = _Voice(float(loudness), now)
        else:
            # As many smoothing steps as packets, so a level's weight does not depend
            # on how often levels come.
            weight = 1 - (1 - _SMOOTHING) ** max(packets, 1)
            voice.loudness += weight * (loudness - voice.loudness)
            voice.updated = now
        if now - self._evaluated >= _EVALUATE_EVERY:
            self._evaluated = now
            self._evaluate(now)

    def remove(self, participant_id: str) -> None:
        """Forget a participant (they left or stopped publishing audio)."""
        self._voices.pop(participant_id, None)
        if self._candidate == participant_id:
            self._candidate = None
        if self.active == participant_id:
            self.active = None

    def _speaking(self, participant_id: str | None, now: float) -> float | None:
        voice = self._voices.get(participant_id) if participant_id is not None else None
        if voice is None or now - voice.updated > _STALE_AFTER:
            return None
        return voice.loudness if voice.loudness >= self._threshold else None

    def _evaluate(self, now: float) -> None:
        loudest: str | None = None
        loudest_level = -1.0
        for participant_id in self._voices:
            level = self._speaking(participant_id, now)
            if level is not None and level > loudest_level:
                loudest, loudest_level = participant_id, level
        active_level = self._speaking(self.active, now)
        if (
            loudest is None
            or loudest == self.active
            or (active_level is not None and loudest_level < active_level + _MARGIN_DB)
        ):
            self._candidate = None
            return
        if loudest != self._candidate:
            self._candidate, self._candidate_since = loudest, now
        elif now - self._candidate_since >= self._switch_delay:
            self.active, self._candidate = loudest, None
            self._on_change(loudest)
