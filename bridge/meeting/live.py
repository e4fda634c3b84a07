"""A live meeting's people and media: participants, their router, tracks, speaker.

:class:`Participant` is what a door holds for someone it admitted: every change that
person makes (publish, answer, mute, hand, leave) goes through it, and so through
:class:`~bridge.meeting.meetings.Meetings`, whatever the door.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .attendee import Attendee
from .events import MeetingEvent, Track
from .media import Connection, MediaError, MediaRouter, ParticipantMedia, TrunkMedia
from .meeting import Meeting
from .roles import Role

if TYPE_CHECKING:
    from .identity import Identity
    from .meetings import Meetings

log = logging.getLogger("visio.meeting.live")


class Participant:
    """Someone in a live meeting right now, through one door."""

    def __init__(
        self,
        meetings: Meetings,
        meeting: Meeting,
        participant_id: str,
        identity: Identity,
        display_name: str,
        joined_at: int,
        attendee: Attendee,
        via: str | None = None,
        rtc_identity: str | None = None,
    ) -> None:
        self.id = participant_id
        #: The trunk they are behind when another agency's bridge serves them (their
        #: media comes over it); None for this bridge's own people.
        self.via = via
        self.user_id = identity.user_id
        self.server = identity.server
        self.display_name = display_name
        self.avatar_url = identity.avatar_url
        self.role: Role = identity.role
        self.joined_at = joined_at
        self.audio_muted = False
        self.video_muted = False
        self.hand_raised = False
        #: Whether their media is end-to-end encrypted with keys only their call's
        #: clients hold (Element Call): other doors cannot play it.
        self.encrypted = False
        #: The identity MatrixRTC clients (Element Call) know them by: the LiveKit
        #: identity of their call membership, theirs or the one the bridge publishes for
        #: them. None when nobody publishes one (Element Call does not list them).
        self.rtc_identity = rtc_identity
        self.meeting = meeting
        self.attendee = attendee
        self.media: ParticipantMedia | None = None
        self._meetings = meetings

    def __repr__(self) -> str:
        return f"<Participant {self.id} {self.user_id} in {self.meeting.id}>"

    def describe(self) -> dict[str, Any]:
        """What the others may know of them, as our web protocol and trunks carry it."""
        return {
            "participant_id": self.id,
            "user_id": self.user_id,
            "display_name": self.display_name,
            "avatar_url": self.avatar_url,
            "role": self.role.name.lower(),
            "audio_muted": self.audio_muted,
            "video_muted": self.video_muted,
            "hand_raised": self.hand_raised,
            "encrypted": self.encrypted,
            "rtc_identity": self.rtc_identity,
        }

    @property
    def present(self) -> bool:
        """Still in the meeting (not left, replaced, dismissed or ended)."""
        return self.meeting.participants.get(self.id) is self

    def _media(self) -> ParticipantMedia:
        if not self.present or self.media is None:
            raise MediaError("You are no longer in this meeting.", code="not_joined")
        return self.media

    async def publish(
        self, offer_sdp: str, sources: Mapping[str, str], data_channels: bool = False
    ) -> str:
        """Publish (or change) this participant's tracks; returns the answer SDP.
        Raises :class:`~bridge.meeting.media.MediaError` on a bad offer."""
        return await self._media().publish(offer_sdp, sources, data_channels)

    def set_receiving(self, publisher_id: str, source: str, receiving: bool) -> None:
        """Pause or resume receiving one of another participant's tracks."""
        self._media().set_receiving(f"{publisher_id}/{source}", receiving)

    def set_layer(self, publisher_id: str, source: str, layer: int) -> None:
        """Receive a simulcast layer of another participant's video: 0 the lowest."""
        self._media().set_layer(f"{publisher_id}/{source}", layer)

    async def add_candidate(self, connection: Connection, candidate: str) -> bool:
        """An ICE candidate the participant's client trickled (see the media interface)."""
        return await self._media().add_candidate(connection, candidate)

    async def accept_answer(self, answer_sdp: str) -> None:
        """Apply the participant's answer to the server's last offer."""
        await self._media().accept_answer(answer_sdp)

    async def set_muted(self, audio: bool, video: bool) -> None:
        await self._meetings.update(self, audio_muted=audio, video_muted=video)

    async def set_encrypted(self, encrypted: bool) -> None:
        """Their client encrypts its media end to end (the SFU forwards it untouched)."""
        await self._meetings.update(self, encrypted=encrypted)

    async def raise_hand(self, raised: bool) -> None:
        await self._meetings.update(self, hand_raised=raised)

    async def leave(self) -> None:
        """Leave the meeting; safe to call more than once, and after a dismissal."""
        await self._meetings.leave(self)


class Watcher(Protocol):
    """Hears every event of a live meeting (a trunk tells the other bridge)."""

    def deliver(self, event: MeetingEvent) -> None: ...


class LiveMeeting:
    """The media side of one live meeting that has (or is admitting) people."""

    def __init__(self, meeting: Meeting) -> None:
        self.meeting = meeting
        self.router: MediaRouter | None = None
        self.tracks: dict[str, Track] = {}
        self.active_speaker: str | None = None
        #: Joins in progress: they keep the router open until they are in or refused.
        self.admitting = 0
        #: Trunks to other agencies' bridges, by trunk id; they keep the router open.
        self.trunks: dict[str, TrunkMedia] = {}
        #: Doors that hear every meeting event without being a participant (trunks).
        self.watchers: list[Watcher] = []

    @property
    def empty(self) -> bool:
        return not self.meeting.participants and self.admitting == 0 and not self.trunks

    def broadcast(self, event: MeetingEvent, exclude: str | None = None) -> None:
        """Deliver an event to everyone in the meeting and to its watchers; one failing
        door hurts no other."""
        for watcher in list(self.watchers):
            try:
                watcher.deliver(event)
            except Exception:
                log.exception("Delivering %s to %s failed", type(event).__name__, watcher)
        for participant in list(self.meeting.participants.values()):
            if participant.id == exclude:
                continue
            try:
                participant.attendee.deliver(event)
            except Exception:
                log.exception("Delivering %s to %s failed", type(event).__name__, participant)
