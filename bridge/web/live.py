"""Live meetings on the web side: one SFU router and the connected sessions per meeting.

The meeting domain knows who is in a meeting; this module connects it to the media
router and to the browsers' signaling sessions, and tells everyone what changes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from aiortc import RTCIceServer

from ..media.events import (
    ActiveSpeaker,
    MediaEvent,
    ParticipantMediaClosed,
    TrackPublished,
    TrackUnpublished,
)
from ..media.router import Router
from ..media.settings import MediaSettings
from ..meeting.meeting import Meeting, Participant
from ..meeting.meetings import Change

if TYPE_CHECKING:
    from ..context import Bridge

log = logging.getLogger("visio.web.live")


class SessionLike(Protocol):
    """What a live meeting needs of a signaling session."""

    participant_id: str
    participant: Participant | None

    def send(self, message: dict[str, Any]) -> None: ...

    async def close(self, code: str | None, message: str | None) -> None: ...


def participant_json(participant_id: str, participant: Participant) -> dict[str, Any]:
    return {
        "participant_id": participant_id,
        "user_id": participant.user_id,
        "display_name": participant.display_name,
        "avatar_url": participant.avatar_url,
        "role": participant.role.name.lower(),
        "audio_muted": participant.audio_muted,
        "video_muted": participant.video_muted,
        "hand_raised": participant.hand_raised,
    }


def media_settings(bridge: Bridge) -> MediaSettings:
    config = bridge.config
    servers = [
        RTCIceServer(
            urls=server["urls"],
            username=server.get("username"),
            credential=server.get("credential"),
        )
        for server in config["media.ice_servers"]
    ]
    return MediaSettings(
        ice_servers=servers, host_addresses=list(config["media.host_addresses"]) or None
    )


class LiveMeeting:
    """The router and sessions of one live meeting."""

    def __init__(self, bridge: Bridge, meeting: Meeting, settings: MediaSettings) -> None:
        self.bridge = bridge
        self.meeting = meeting
        self.router = Router(meeting.id, settings, on_event=self._media_event)
        self.sessions: dict[str, SessionLike] = {}
        # Sessions between sign-in and admission: they keep the router open.
        self.pending: set[str] = set()
        self.tracks: dict[str, dict[str, str]] = {}
        self.active_speaker: str | None = None

    def session_of(self, user_id: str) -> SessionLike | None:
        for session in self.sessions.values():
            if session.participant is not None and session.participant.user_id == user_id:
                return session
        return None

    def others(self, participant_id: str) -> list[dict[str, Any]]:
        return [
            participant_json(pid, session.participant)
            for pid, session in self.sessions.items()
            if pid != participant_id and session.participant is not None
        ]

    def broadcast(self, message: dict[str, Any], exclude: str | None = None) -> None:
        for pid, session in list(self.sessions.items()):
            if pid != exclude:
                session.send(message)

    def reserve(self, participant_id: str) -> None:
        self.pending.add(participant_id)

    def admit(self, session: SessionLike) -> None:
        assert session.participant is not None
        self.pending.discard(session.participant_id)
        self.sessions[session.participant_id] = session
        self.broadcast(
            {
                "type": "participant_joined",
                "participant": participant_json(session.participant_id, session.participant),
            },
            exclude=session.participant_id,
        )

    def updated(self, session: SessionLike) -> None:
        assert session.participant is not None
        self.broadcast(
            {
                "type": "participant_updated",
                "participant": participant_json(session.participant_id, session.participant),
            }
        )

    def remove(self, session: SessionLike) -> None:
        self.pending.discard(session.participant_id)
        if self.sessions.get(session.participant_id) is not session:
            return
        del self.sessions[session.participant_id]
        self.broadcast({"type": "participant_left", "participant_id": session.participant_id})

    def _media_event(self, event: MediaEvent) -> None:
        if isinstance(event, TrackPublished):
            track = {
                "participant_id": event.participant_id,
                "source": event.source,
                "kind": event.kind,
            }
            self.tracks[event.track_id] = track
            self.broadcast({"type": "track_added", **track})
        elif isinstance(event, TrackUnpublished):
            track = self.tracks.pop(event.track_id, {}) or {
                "participant_id": event.participant_id,
                "source": event.source,
                "kind": event.kind,
            }
            self.broadcast({"type": "track_removed", **track})
        elif isinstance(event, ActiveSpeaker):
            self.active_speaker = event.participant_id
            self.broadcast({"type": "active_speaker", "participant_id": event.participant_id})
        elif isinstance(event, ParticipantMediaClosed) and event.reason != "left":
            session = self.sessions.get(event.participant_id)
            if session is not None:
                log.info(
                    "Media of %s in %s closed: %s",
                    event.participant_id,
                    self.meeting.id,
                    event.reason,
                )
                self.bridge.web.spawn(
                    session.close("reconnect", f"Media connection lost: {event.reason}")
                )

    async def close(self, code: str | None, message: str | None) -> None:
        for session in list(self.sessions.values()):
            await session.close(code, message)
        await self.router.close()


class LiveMeetings:
    """The live meetings of one bridge that have people in them."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self._live: dict[str, LiveMeeting] = {}
        self._settings: MediaSettings | None = None
        bridge.meetings.listeners.append(self._meeting_changed)

    def get(self, meeting_id: str) -> LiveMeeting | None:
        return self._live.get(meeting_id)

    def get_or_create(self, meeting: Meeting) -> LiveMeeting:
        live = self._live.get(meeting.id)
        if live is None:
            if self._settings is None:
                self._settings = media_settings(self.bridge)
            live = self._live[meeting.id] = LiveMeeting(self.bridge, meeting, self._settings)
            log.info("Media router opened for meeting %s", meeting.id)
        return live

    async def release_if_empty(self, live: LiveMeeting) -> None:
        if live.sessions or live.pending or self._live.get(live.meeting.id) is not live:
            return
        del self._live[live.meeting.id]
        await live.router.close()
        log.info("Media router closed for meeting %s (nobody left)", live.meeting.id)

    async def _meeting_changed(self, meeting: Meeting, change: Change) -> None:
        if change != Change.ENDED:
            return
        live = self._live.pop(meeting.id, None)
        if live is not None:
            await live.close("meeting_ended", "The meeting has ended.")

    async def close(self) -> None:
        for live in list(self._live.values()):
            await live.close("reconnect", "The meeting server is restarting.")
        self._live.clear()

    def stats(self) -> dict[str, Any]:
        return {
            meeting_id: {"sessions": len(live.sessions), "router": live.router.stats()}
            for meeting_id, live in self._live.items()
        }
