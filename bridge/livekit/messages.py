"""The meeting, as LiveKit's protobuf messages say it (``livekit-protocol``).

LiveKit clients know participants by ``sid`` and ``identity`` and tracks by ``sid``. Here
a participant's sid is their meeting participant id, whatever door they came through
(so the ``a=msid`` stream id the router gives their tracks names them), and a track's sid
is made from its publisher and source, so every LiveKit session of a meeting calls the
same track by the same sid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from livekit.protocol import models, rtc

from ..meeting.events import Track
from ..meeting.live import Participant
from ..meeting.media import Source, msid_source

#: The LiveKit server version the bridge says it speaks like: it must be non-empty for
#: livekit-client, at least 1.8 for its RPC checks, and at most 1.13.6 keeps the client
#: off SVC codecs (which the bridge does not forward).
SERVER_VERSION = "1.9.0"
PROTOCOL_VERSION = 17

SOURCES: dict[int, tuple[Source, int]] = {
    models.TrackSource.CAMERA: ("camera", models.TrackType.VIDEO),
    models.TrackSource.MICROPHONE: ("microphone", models.TrackType.AUDIO),
    models.TrackSource.SCREEN_SHARE: ("screen", models.TrackType.VIDEO),
}
_SOURCE_ENUM: dict[str, int] = {source: enum for enum, (source, _) in SOURCES.items()}
_KIND_ENUM = {"audio": models.TrackType.AUDIO, "video": models.TrackType.VIDEO}


def track_sid(participant_id: str, source: str) -> str:
    """The sid of a participant's track from one source (``TR_`` as LiveKit's are)."""
    return f"TR_{participant_id}_{source}"


def room_sid(meeting_id: str) -> str:
    return f"RM_{meeting_id}"


@dataclass
class Person:
    """What a LiveKit session knows of one participant of the meeting."""

    participant: Participant
    identity: str
    tracks: dict[str, Track]

    def muted(self, source: str) -> bool:
        if source == "microphone":
            return self.participant.audio_muted
        if source == "camera":
            return self.participant.video_muted
        return False


#: What a track is sent in when the router has not said yet (the bridge prefers VP8).
DEFAULT_MIME_TYPES = {"audio": "audio/opus", "video": "video/VP8"}


def track_info(
    participant_id: str, track: Track, muted: bool, encryption: int = models.Encryption.NONE
) -> models.TrackInfo:
    """A track as LiveKit clients know it. livekit-client needs ``mime_type`` to set up
    a decryptor, and decrypts only tracks whose ``encryption`` is not NONE."""
    return models.TrackInfo(
        sid=track_sid(participant_id, track.source),
        mime_type=track.mime_type or DEFAULT_MIME_TYPES[track.kind],
        encryption=encryption,  # type: ignore[arg-type]
        type=_KIND_ENUM[track.kind],
        source=_SOURCE_ENUM[track.source],  # type: ignore[arg-type]
        name=track.source,
        muted=muted,
        stream="screen" if track.source == "screen" else "camera",
    )


def participant_info(
    person: Person,
    version: int,
    *,
    left: int | None = None,
) -> models.ParticipantInfo:
    """A participant as LiveKit clients know them; ``left`` marks one who is gone."""
    p = person.participant
    state = (
        models.ParticipantInfo.State.ACTIVE
        if left is None
        else models.ParticipantInfo.DISCONNECTED
    )
    info = models.ParticipantInfo(
        sid=p.id,
        identity=person.identity,
        name=p.display_name,
        state=state,
        joined_at=p.joined_at // 1000,
        joined_at_ms=p.joined_at,
        version=version,
        is_publisher=bool(person.tracks),
        permission=models.ParticipantPermission(
            can_subscribe=True, can_publish=True, can_publish_data=True
        ),
        attributes={"matrix_user_id": p.user_id},
    )
    # Element Call encrypts every track of a participant with AES-GCM, or none.
    encryption = models.Encryption.GCM if p.encrypted else models.Encryption.NONE
    if left is not None:
        info.disconnect_reason = left  # type: ignore[assignment]
    else:
        info.tracks.extend(
            track_info(p.id, track, person.muted(track.source), encryption)
            for track in person.tracks.values()
        )
    return info


def ice_servers(servers: Iterable[Mapping[str, Any]]) -> list[rtc.ICEServer]:
    """The bridge's ICE servers (``RTCIceServer`` dicts) as LiveKit sends them."""
    result = []
    for server in servers:
        urls = server.get("urls", [])
        result.append(
            rtc.ICEServer(
                urls=[urls] if isinstance(urls, str) else list(urls),
                username=str(server.get("username", "")),
                credential=str(server.get("credential", "")),
            )
        )
    return result


_MID = re.compile(r"^a=mid:(\S+)\s*$")
_MSID = re.compile(r"^a=msid:(\S+) (\S+)\s*$")


def section_msids(sdp: str) -> dict[str, tuple[str, str]]:
    """Each media section's mid and its ``a=msid`` (stream id, track id), when it has
    both. Reads SDP only to label sections: the media layer checks the SDP itself."""
    found: dict[str, tuple[str, str]] = {}
    mid: str | None = None
    msid: tuple[str, str] | None = None
    for line in [*sdp.splitlines(), "m=end"]:
        if line.startswith("m="):
            if mid is not None and msid is not None:
                found[mid] = msid
            mid = msid = None
        elif (match := _MID.match(line)) is not None:
            mid = match.group(1)
        elif (match := _MSID.match(line)) is not None:
            msid = (match.group(1), match.group(2))
    return found


def mid_to_track_id(offer_sdp: str) -> dict[str, str]:
    """For a server offer: each section's mid and the sid of the track it carries (the
    router names a track ``a=msid:<participant id> <participant id>.<source>``)."""
    return {
        mid: track_sid(stream, msid_source(stream, track))
        for mid, (stream, track) in section_msids(offer_sdp).items()
    }
