"""What crosses between two agencies' bridges, and the checks on what comes in.

Two kinds of messages:

- **Negotiation**, as Matrix room events of the project's namespace, so that the
  homeservers' federation authenticates the peer bridge (an event is signed by its
  sender's server): ``io.visiobridge.trunk.offer`` from the satellite's bot
  ``{"version": 1, "host", "meeting_id", "trunk_id", "sdp"}`` (``host``: the bot it is
  for; every other bridge in the room ignores it) and ``io.visiobridge.trunk.answer``
  from the host's bot ``{"version": 1, "trunk_id", "sdp"}`` or ``{"version": 1,
  "trunk_id", "error"}``.
- **Meeting state**, as JSON text on the trunk's state data channel: ``hello``,
  ``joined`` (a participant, see :func:`participant_message`), ``updated``, ``left``,
  ``speaker`` (host to satellite only), ``end`` and ``bye``.

Nothing here trusts its input: every parser raises :class:`BadMessage` with a sentence
for the log.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..meeting.live import Participant
from ..meeting.roles import Role

TRUNK_OFFER = "io.visiobridge.trunk.offer"
TRUNK_ANSWER = "io.visiobridge.trunk.answer"
VERSION = 1

#: The largest SDP a trunk offer or answer may carry (32 sections and candidates fit
#: in a quarter of this).
MAX_SDP = 128 * 1024

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Participant ids are msid stream ids (see bridge.media.router).
_PARTICIPANT_ID = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]{1,64}")
_USER_ID = re.compile(r"@[^:\s]{1,255}:[A-Za-z0-9.:\[\]-]{1,255}")
_MAX_NAME = 256
#: A LiveKit identity: lk-jwt-service's hash, or "<user id>:<device id>".
_RTC_IDENTITY = re.compile(r"[\x21-\x7e]{1,600}")
_MAX_AVATAR = 1024


class BadMessage(ValueError):
    """A message from the other bridge that is not what the protocol allows."""


def _text(content: dict[str, Any], key: str, pattern: re.Pattern[str] | None = None) -> str:
    value = content.get(key)
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise BadMessage(f"{key!r} is missing or malformed")
    return value


@dataclass(frozen=True)
class TrunkOffer:
    host: str
    meeting_id: str
    trunk_id: str
    sdp: str


@dataclass(frozen=True)
class TrunkAnswer:
    trunk_id: str
    sdp: str | None
    error: str | None


def _check_version(content: object) -> dict[str, Any]:
    if not isinstance(content, dict):
        raise BadMessage("the content is not an object")
    if content.get("version") != VERSION:
        raise BadMessage(f"version {content.get('version')!r} is not {VERSION}")
    return content


def parse_offer(content: object) -> TrunkOffer:
    checked = _check_version(content)
    sdp = _text(checked, "sdp")
    if len(sdp) > MAX_SDP:
        raise BadMessage("the SDP is too large")
    return TrunkOffer(
        _text(checked, "host", _USER_ID),
        _text(checked, "meeting_id", _TOKEN),
        _text(checked, "trunk_id", _TOKEN),
        sdp,
    )


def parse_answer(content: object) -> TrunkAnswer:
    checked = _check_version(content)
    trunk_id = _text(checked, "trunk_id", _TOKEN)
    error = checked.get("error")
    if error is not None:
        if not isinstance(error, str):
            raise BadMessage("'error' is not text")
        return TrunkAnswer(trunk_id, None, error[:500])
    sdp = _text(checked, "sdp")
    if len(sdp) > MAX_SDP:
        raise BadMessage("the SDP is too large")
    return TrunkAnswer(trunk_id, sdp, None)


# State channel ------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteParticipant:
    """A participant as the other bridge describes them."""

    id: str
    user_id: str
    display_name: str
    avatar_url: str | None
    role: Role
    audio_muted: bool
    video_muted: bool
    hand_raised: bool
    encrypted: bool
    #: Their MatrixRTC (LiveKit) identity, when Element Call knows them by one.
    rtc_identity: str | None = None

    @property
    def server(self) -> str:
        return self.user_id.split(":", 1)[1]


def participant_message(kind: str, participant: Participant) -> str:
    """``joined`` or ``updated``, for a participant the other side should see."""
    return json.dumps({"type": kind, "participant": participant.describe()})


_STATE_TYPES = (
    "hello",
    "joined",
    "updated",
    "left",
    "speaker",
    "capture",
    "caption",
    "end",
    "bye",
)

#: The longest caption a trunk carries, in characters.
MAX_CAPTION = 2000


def caption_of(message: dict[str, Any]) -> tuple[str, str]:
    """(participant id, text) of a ``caption`` message."""
    participant_id = participant_id_of(message)
    text = message.get("text")
    if participant_id is None or not isinstance(text, str) or not 0 < len(text) <= MAX_CAPTION:
        raise BadMessage(f"a caption needs a participant_id and 1 to {MAX_CAPTION} characters")
    return participant_id, text


def capture_of(message: dict[str, Any]) -> tuple[bool, bool]:
    """(recording, transcribing) of a ``capture`` message."""
    recording, transcribing = message.get("recording"), message.get("transcribing")
    if not isinstance(recording, bool) or not isinstance(transcribing, bool):
        raise BadMessage("capture needs recording and transcribing as true or false")
    return recording, transcribing


def state_message(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields})


def parse_state(text: str) -> dict[str, Any]:
    """A state channel message as an object with a known ``type``."""
    try:
        message = json.loads(text)
    except ValueError as error:
        raise BadMessage(f"not JSON ({error})") from None
    if not isinstance(message, dict):
        raise BadMessage("not an object")
    if message.get("type") not in _STATE_TYPES:
        raise BadMessage(f"unknown type {message.get('type')!r}")
    return message


def parse_participant(message: dict[str, Any]) -> RemoteParticipant:
    data = message.get("participant")
    if not isinstance(data, dict):
        raise BadMessage("'participant' is not an object")
    name = data.get("display_name")
    if not isinstance(name, str) or len(name) > _MAX_NAME:
        raise BadMessage("'display_name' is missing or too long")
    avatar = data.get("avatar_url")
    if avatar is not None and (
        not isinstance(avatar, str) or not avatar.startswith("mxc://") or len(avatar) > _MAX_AVATAR
    ):
        raise BadMessage("'avatar_url' is not an mxc:// URL")
    role = data.get("role")
    if role not in ("participant", "moderator"):
        raise BadMessage(f"unknown role {role!r}")
    flags = {}
    for key in ("audio_muted", "video_muted", "hand_raised", "encrypted"):
        if not isinstance(data.get(key), bool):
            raise BadMessage(f"{key!r} is not true or false")
        flags[key] = data[key]
    rtc_identity = data.get("rtc_identity")
    if rtc_identity is not None and (
        not isinstance(rtc_identity, str) or not _RTC_IDENTITY.fullmatch(rtc_identity)
    ):
        raise BadMessage("'rtc_identity' is malformed")
    return RemoteParticipant(
        id=_text(data, "participant_id", _PARTICIPANT_ID),
        user_id=_text(data, "user_id", _USER_ID),
        display_name=name,
        avatar_url=avatar,
        role=Role[role.upper()],
        rtc_identity=rtc_identity,
        **flags,
    )


def participant_id_of(message: dict[str, Any], key: str = "participant_id") -> str | None:
    value = message.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not _PARTICIPANT_ID.fullmatch(value):
        raise BadMessage(f"{key!r} is malformed")
    return value


def user_id_of(message: dict[str, Any], key: str) -> str:
    return _text(message, key, _USER_ID)
