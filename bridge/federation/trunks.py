"""The trunk door: one meeting across two agencies' bridges, one connection between them.

In a room where this bridge's bot and a trusted peer bridge's bot (``federation.
peer_bridges``) are both members, the bridge whose bot started the meeting *hosts* it;
the other keeps its *side* of it (:meth:`Meetings.start_hosted_elsewhere`), so that its
own agency's people join on their own agency's bridge. While that side has people, it
keeps one trunk to the host: one WebRTC connection (:class:`~bridge.meeting.media.
TrunkMedia`) that carries each side's tracks to the other once, plus a data channel for
meeting state. With more agencies the trunks form a star around the host, which
forwards between them.

The trunk is negotiated through Matrix (see :mod:`bridge.federation.messages`): the
satellite's bot sends an offer event in the room, the host's bot answers in the room.
The host answers only bots listed in ``federation.peer_bridges``; anything else is
ignored with a log line, and nothing is allocated.

Each side tells the other, on the state channel, who is in on its side (``joined``,
``updated``, ``left``). The other side admits them as participants behind the trunk
(``Meetings.join(..., trunk=...)``): they count, show and are heard on every door, and
their media comes over the trunk. The host decides the active speaker and tells the
satellites. ``end`` from either side ends the meeting on both.

Public API::

    trunks = Trunks(meetings, signals, policy, ends)
    meetings.listeners.append(trunks.meeting_changed)
    await trunks.offer_received(room_id, sender, content, age_ms)   # from matrix/
    await trunks.answer_received(room_id, sender, content, age_ms)  # from matrix/
    await trunks.end_everywhere(meeting, user_id)    # a moderator of this side ends it
    await trunks.close()
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..meeting.attendee import Dismissal
from ..meeting.events import (
    Caption,
    CaptureChanged,
    MeetingEnded,
    MeetingEvent,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    SpeakerChanged,
)
from ..meeting.identity import Identity
from ..meeting.live import Participant
from ..meeting.media import MediaError, TrunkLimits, TrunkMedia
from ..meeting.meeting import Meeting, MeetingSummary
from ..meeting.meetings import Change, MeetingError, Meetings
from .messages import (
    TRUNK_ANSWER,
    TRUNK_OFFER,
    VERSION,
    BadMessage,
    RemoteParticipant,
    caption_of,
    capture_of,
    parse_answer,
    parse_offer,
    parse_participant,
    parse_state,
    participant_id_of,
    participant_message,
    state_message,
    user_id_of,
)

log = logging.getLogger("visio.federation")

#: Negotiation events older than this are stale (a replay, or a backlog after an
#: outage): their sender has given up on them already.
MAX_EVENT_AGE_MS = 120_000
#: The most people one trunk may bring into a meeting (each is a participant here).
MAX_BEHIND = 500
#: Trunk ids remembered to ignore replayed offers and answers.
_SEEN = 4096


class TrunkSignals(Protocol):
    """How the door sends its negotiation events (implemented by :mod:`bridge.matrix`)."""

    async def send_trunk_event(
        self, room_id: str, event_type: str, content: dict[str, Any]
    ) -> None: ...


class PeerEnds(Protocol):
    """How the host shows, in the room, a meeting a peer bridge's moderator ended."""

    async def ended_by_peer(self, meeting: Meeting, summary: MeetingSummary) -> None: ...


@dataclass(frozen=True)
class TrunkPolicy:
    """What the config says about trunks."""

    own_bot: str
    peer_bridges: frozenset[str]
    max_trunks: int = 32
    limits: TrunkLimits = field(default_factory=TrunkLimits)
    #: How long the satellite waits for the host's answer.
    answer_timeout_s: float = 30.0
    #: Waits before each new attempt after a trunk failed or was not answered.
    retry_delays_s: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)
    #: How long an end asked of the host waits for the host to confirm it.
    end_wait_s: float = 2.0

    def is_peer(self, user_id: str) -> bool:
        return user_id in self.peer_bridges and user_id != self.own_bot


def _server(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


class _Behind:
    """The attendee of a participant behind a trunk: their own bridge talks to them."""

    def deliver(self, event: MeetingEvent) -> None:
        pass

    async def send_offer(self, sdp: str) -> None:
        raise MediaError("Media of a participant behind a trunk comes over the trunk.")

    async def dismiss(self, dismissal: Dismissal) -> None:
        pass


class TrunkLink:
    """One trunk, seen from this bridge: its media, what it tells the other bridge, and
    what it admits from it. Implements the media's ``TrunkListener`` and the meeting's
    ``Watcher``."""

    def __init__(self, door: Trunks, meeting: Meeting, trunk_id: str, peer: str, host: bool):
        self.door = door
        self.meeting = meeting
        self.trunk_id = trunk_id
        #: The other bridge's bot.
        self.peer = peer
        #: Whether this bridge hosts the meeting (the other side is a satellite).
        self.hosting = host
        self.media: TrunkMedia | None = None
        self.opened = False
        self.closed = False
        #: Who the other bridge was told is in, through this trunk.
        self._told: set[str] = set()
        #: What the other bridge was last told is captured on this side.
        self._capture_told: tuple[bool, bool] = (False, False)
        self._inbox: asyncio.Queue[str] = asyncio.Queue(maxsize=1024)
        self._worker: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        side = "to satellite" if self.hosting else "to host"
        return f"<Trunk {self.trunk_id} {side} {self.peer} for {self.meeting.id}>"

    # TrunkListener -----------------------------------------------------------------

    def trunk_open(self) -> None:
        self.opened = True
        self.door._attempts.pop(self.meeting.id, None)
        log.info("%s is up", self)
        self._send(state_message("hello", version=VERSION, meeting_id=self.meeting.id))
        for participant in list(self.meeting.participants.values()):
            if participant.via != self.trunk_id:
                self._tell_joined("joined", participant)
        if self.hosting:
            live = self.door.meetings.media_of(self.meeting.id)
            if live is not None and live.active_speaker is not None:
                self._send(state_message("speaker", participant_id=live.active_speaker))
        self._tell_capture(force=True)

    def trunk_state(self, message: str) -> None:
        try:
            self._inbox.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("%s: state messages arrive faster than handled; dropping one", self)
            return
        if self._worker is None or self._worker.done():
            self._worker = self.door._spawn(self._work())

    def trunk_closed(self, reason: str) -> None:
        if not self.closed:
            self.door._spawn(self.door._link_closed(self, reason))

    # Watcher -----------------------------------------------------------------------

    def deliver(self, event: MeetingEvent) -> None:
        if not self.opened or self.closed:
            return  # the roster goes out in full when the trunk opens
        if isinstance(event, ParticipantJoined | ParticipantUpdated):
            if event.participant.via != self.trunk_id:
                kind = "joined" if isinstance(event, ParticipantJoined) else "updated"
                self._tell_joined(kind, event.participant)
        elif isinstance(event, ParticipantLeft):
            if event.participant_id in self._told:
                self._told.discard(event.participant_id)
                self._send(state_message("left", participant_id=event.participant_id))
        elif isinstance(event, SpeakerChanged):
            if self.hosting:
                self._send(state_message("speaker", participant_id=event.participant_id))
        elif isinstance(event, CaptureChanged):
            self._tell_capture()
        elif isinstance(event, Caption):
            # Whichever bridge transcribed it, a caption crosses each trunk once and is
            # never sent back where it came from.
            if event.via != self.trunk_id:
                self._send(
                    state_message("caption", participant_id=event.participant_id, text=event.text)
                )
        elif isinstance(event, MeetingEnded):
            self._send(state_message("end", ended_by=event.ended_by))

    def _tell_capture(self, force: bool = False) -> None:
        """Tell the other bridge what is recorded or transcribed on this side (or
        through another trunk of this one), so its people are told too."""
        capture = self.meeting.capture_except(self.trunk_id)
        if force or capture != self._capture_told:
            self._capture_told = capture
            recording, transcribing = capture
            self._send(state_message("capture", recording=recording, transcribing=transcribing))

    # Inbound -----------------------------------------------------------------------

    async def _work(self) -> None:
        while not self._inbox.empty():
            text = self._inbox.get_nowait()
            if self.closed:
                continue
            try:
                await self._handle(text)
            except BadMessage as error:
                log.warning("%s: ignoring a state message: %s", self, error)
            except (MeetingError, MediaError) as error:
                log.warning("%s: could not apply a state message: %s", self, error)
            except Exception:
                log.exception("%s: handling a state message failed", self)

    async def _handle(self, text: str) -> None:
        message = parse_state(text)
        kind = message["type"]
        meetings = self.door.meetings
        if kind == "hello":
            if message.get("meeting_id") != self.meeting.id:
                raise BadMessage("hello names another meeting")
        elif kind == "joined":
            await self._joined(parse_participant(message))
        elif kind == "updated":
            remote = parse_participant(message)
            participant = self._behind(remote.id)
            if participant is None:
                raise BadMessage(f"update of {remote.id}, who is not behind this trunk")
            await meetings.update(
                participant,
                audio_muted=remote.audio_muted,
                video_muted=remote.video_muted,
                hand_raised=remote.hand_raised,
                encrypted=remote.encrypted,
            )
        elif kind == "left":
            participant = self._behind(participant_id_of(message) or "")
            if participant is not None:
                await participant.leave()
        elif kind == "speaker":
            if self.hosting:
                raise BadMessage("the active speaker is the host's to decide")
            meetings.set_speaker(self.meeting, participant_id_of(message))
        elif kind == "caption":
            participant_id, caption = caption_of(message)
            if participant_id not in self.meeting.participants:
                raise BadMessage(f"a caption of {participant_id}, who is not in the meeting")
            meetings.caption(self.meeting, participant_id, caption, via=self.trunk_id)
        elif kind == "capture":
            meetings.set_capture_elsewhere(self.meeting, self.trunk_id, capture_of(message))
        elif kind == "end":
            await self.door._ended_by_peer(self, user_id_of(message, "ended_by"))
        elif kind == "bye":
            # The satellite had nobody left, or the host stops: a satellite with people
            # offers again (to the restarted host).
            await self.door._link_closed(self, "the other side closed the trunk")

    async def _joined(self, remote: RemoteParticipant) -> None:
        own = _server(self.door.policy.own_bot)
        if self.hosting and remote.server != _server(self.peer):
            raise BadMessage(f"{remote.user_id} is not a user of {_server(self.peer)}")
        if not self.hosting and remote.server == own:
            raise BadMessage(f"{remote.user_id} is a user of this bridge's own server")
        meeting = self.meeting
        existing = meeting.participants.get(remote.id)
        if existing is not None and existing.via != self.trunk_id:
            raise BadMessage(f"participant id {remote.id} is taken here")
        present = meeting.participant_of(remote.user_id)
        if present is not None and present.via != self.trunk_id:
            raise BadMessage(f"{remote.user_id} is in this meeting through this bridge")
        if existing is not None:
            return
        behind = sum(p.via == self.trunk_id for p in meeting.participants.values())
        if behind >= MAX_BEHIND:
            raise BadMessage(f"{behind} people behind one trunk is the most")
        assert self.media is not None
        identity = Identity(
            remote.user_id, remote.server, remote.display_name, remote.avatar_url, remote.role
        )
        participant = await self.door.meetings.join(
            meeting,
            identity,
            remote.display_name or identity.fallback_name,
            _Behind(),
            participant_id=remote.id,
            trunk=(self.trunk_id, self.media),
            rtc_identity=remote.rtc_identity,
        )
        if remote.audio_muted or remote.video_muted or remote.hand_raised or remote.encrypted:
            await self.door.meetings.update(
                participant,
                audio_muted=remote.audio_muted,
                video_muted=remote.video_muted,
                hand_raised=remote.hand_raised,
                encrypted=remote.encrypted,
            )

    def _tell_joined(self, kind: str, participant: Participant) -> None:
        self._told.add(participant.id)
        self._send(participant_message(kind, participant))

    def _behind(self, participant_id: str) -> Participant | None:
        participant = self.meeting.participants.get(participant_id)
        return (
            participant if participant is not None and participant.via == self.trunk_id else None
        )

    def _send(self, message: str) -> None:
        if self.media is None or self.closed:
            return
        try:
            self.media.send_state(message)
        except MediaError as error:
            log.warning("%s: could not send a state message: %s", self, error)


class Trunks:
    """Every trunk of this bridge: hosts' answers, satellites' offers, their lifecycles."""

    def __init__(
        self, meetings: Meetings, signals: TrunkSignals, policy: TrunkPolicy, ends: PeerEnds
    ) -> None:
        self.meetings = meetings
        self.signals = signals
        self.policy = policy
        self.ends = ends
        self._links: dict[str, TrunkLink] = {}
        #: The satellite's offers waiting for an answer, by trunk id.
        self._pending: dict[str, tuple[TrunkLink, asyncio.TimerHandle]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._attempts: dict[str, int] = {}
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Ends asked of the host, waiting for its confirmation, by meeting id.
        self._ending: dict[str, asyncio.Event] = {}
        self._closing = False

    @property
    def links(self) -> tuple[TrunkLink, ...]:
        return tuple(self._links.values())

    def link_for(self, meeting: Meeting, peer: str | None = None) -> TrunkLink | None:
        for link in self._links.values():
            if link.meeting is meeting and (peer is None or link.peer == peer):
                return link
        return None

    # The satellite's side --------------------------------------------------------------

    async def meeting_changed(self, meeting: Meeting, change: Change) -> None:
        """A meeting listener: keep one trunk up while this side of a meeting hosted
        elsewhere has people, and none after."""
        if change == Change.ENDED:
            if meeting.id in self._ending:
                self._ending[meeting.id].set()
            self._cancel_retry(meeting.id)
            for ending in [link for link in self._links.values() if link.meeting is meeting]:
                await self.close_link(ending, "the meeting ended", say_bye=False)
            return
        if not meeting.hosted_elsewhere or not meeting.is_live:
            return
        locals_ = [p for p in meeting.participants.values() if p.via is None]
        link = self.link_for(meeting)
        if locals_ and link is None and meeting.id not in self._retries:
            await self._connect(meeting)
        elif not locals_ and link is not None:
            self._cancel_retry(meeting.id)
            await self.close_link(link, "nobody is left on this side")

    async def _connect(self, meeting: Meeting) -> None:
        host = meeting.host
        if host is None or self._closing:
            return
        if len(self._links) >= self.policy.max_trunks:
            log.warning(
                "Not linking meeting %s to %s: %d trunks is the limit",
                meeting.id,
                host,
                self.policy.max_trunks,
            )
            return
        trunk_id = "t" + secrets.token_hex(8)
        link = TrunkLink(self, meeting, trunk_id, host, host=False)
        try:
            link.media = self.meetings.open_trunk(meeting, trunk_id, link, self.policy.limits)
            self.meetings.watch(meeting, link)
            self._links[trunk_id] = link
            offer = await link.media.offer()
        except (MeetingError, MediaError) as error:
            log.warning("Could not open a trunk for meeting %s: %s", meeting.id, error)
            await self.close_link(link, "could not offer", say_bye=False)
            return
        timer = asyncio.get_running_loop().call_later(
            self.policy.answer_timeout_s, self._answer_timed_out, trunk_id
        )
        self._pending[trunk_id] = (link, timer)
        self._remember(trunk_id)
        log.info("Offering %s", link)
        content = {
            "version": VERSION,
            "host": host,
            "meeting_id": meeting.id,
            "trunk_id": trunk_id,
            "sdp": offer,
        }
        try:
            await self.signals.send_trunk_event(meeting.room_id, TRUNK_OFFER, content)
        except Exception as error:
            log.warning("Could not send the trunk offer for %s: %s", meeting.id, error)
            await self.close_link(link, "could not send the offer", say_bye=False)

    def _answer_timed_out(self, trunk_id: str) -> None:
        pending = self._pending.pop(trunk_id, None)
        if pending is not None:
            log.warning("%s: no answer from the host", pending[0])
            self._spawn(self.close_link(pending[0], "no answer", say_bye=False))

    async def answer_received(
        self, room_id: str, sender: str, content: object, age_ms: int = 0
    ) -> None:
        """A trunk answer event in a room (its sender is authenticated by federation)."""
        try:
            answer = parse_answer(content)
        except BadMessage as error:
            log.warning("Ignoring a trunk answer from %s in %s: %s", sender, room_id, error)
            return
        pending = self._pending.get(answer.trunk_id)
        if pending is None:
            log.info("Ignoring an answer for trunk %s: not waiting for it", answer.trunk_id)
            return
        link, timer = pending
        if sender != link.peer or room_id != link.meeting.room_id:
            log.warning("Ignoring an answer for %s from %s in %s", link, sender, room_id)
            return
        del self._pending[answer.trunk_id]
        timer.cancel()
        if answer.error is not None or answer.sdp is None:
            log.warning("%s: the host refused: %s", link, answer.error)
            await self.close_link(link, f"refused: {answer.error}", say_bye=False)
            return
        assert link.media is not None
        try:
            await link.media.accept_answer(answer.sdp)
        except MediaError as error:
            log.warning("%s: the host's answer was refused: %s", link, error)
            await self.close_link(link, "bad answer", say_bye=False)
            return
        log.info("%s: answered", link)

    # The host's side -------------------------------------------------------------------

    async def offer_received(
        self, room_id: str, sender: str, content: object, age_ms: int = 0
    ) -> None:
        """A trunk offer event in a room. Only bots in ``federation.peer_bridges`` are
        answered; anything else is ignored with a log line, and nothing is allocated."""
        if not self.policy.is_peer(sender):
            log.warning(
                "Ignoring a trunk offer from %s in %s: not a trusted peer bridge", sender, room_id
            )
            return
        try:
            offer = parse_offer(content)
        except BadMessage as error:
            log.warning("Ignoring a trunk offer from %s in %s: %s", sender, room_id, error)
            return
        if offer.host != self.policy.own_bot:
            return  # for another bridge in the room
        if age_ms > MAX_EVENT_AGE_MS:
            log.warning(
                "Ignoring trunk offer %s from %s: %d s old", offer.trunk_id, sender, age_ms // 1000
            )
            return
        if offer.trunk_id in self._seen:
            log.warning("Ignoring trunk offer %s from %s: seen before", offer.trunk_id, sender)
            return
        self._remember(offer.trunk_id)
        meeting = self.meetings.live_in_room(room_id)
        if meeting is None or meeting.id != offer.meeting_id or meeting.hosted_elsewhere:
            log.warning(
                "Ignoring trunk offer %s from %s: meeting %s is not live here",
                offer.trunk_id,
                sender,
                offer.meeting_id,
            )
            await self._refuse(room_id, offer.trunk_id, "No such meeting is live on this bridge.")
            return
        previous = self.link_for(meeting, sender)
        if previous is not None:
            # The satellite came back (a restart, a lost connection): the new one wins.
            await self.close_link(previous, "replaced by a new trunk", say_bye=False)
        if len(self._links) >= self.policy.max_trunks:
            log.warning(
                "Refusing trunk offer %s from %s: %d trunks is the limit",
                offer.trunk_id,
                sender,
                self.policy.max_trunks,
            )
            await self._refuse(room_id, offer.trunk_id, "This bridge has all the trunks it may.")
            return
        link = TrunkLink(self, meeting, offer.trunk_id, sender, host=True)
        try:
            link.media = self.meetings.open_trunk(
                meeting, offer.trunk_id, link, self.policy.limits
            )
            self._links[offer.trunk_id] = link
            self.meetings.watch(meeting, link)
            answer = await link.media.answer(offer.sdp)
        except (MeetingError, MediaError) as error:
            log.warning("Refusing trunk offer %s from %s: %s", offer.trunk_id, sender, error)
            await self.close_link(link, "bad offer", say_bye=False)
            await self._refuse(room_id, offer.trunk_id, str(error))
            return
        log.info("Answering %s", link)
        content = {"version": VERSION, "trunk_id": offer.trunk_id, "sdp": answer}
        try:
            await self.signals.send_trunk_event(room_id, TRUNK_ANSWER, content)
        except Exception as error:
            log.warning("Could not send the trunk answer for %s: %s", link, error)
            await self.close_link(link, "could not answer", say_bye=False)

    async def _refuse(self, room_id: str, trunk_id: str, reason: str) -> None:
        content = {"version": VERSION, "trunk_id": trunk_id, "error": reason}
        try:
            await self.signals.send_trunk_event(room_id, TRUNK_ANSWER, content)
        except Exception as error:
            log.warning("Could not send a trunk refusal in %s: %s", room_id, error)

    # Both sides ------------------------------------------------------------------------

    async def end_everywhere(self, meeting: Meeting, ended_by: str) -> bool:
        """A moderator on this side of a meeting hosted elsewhere ends it: the host is
        told over the trunk. False when no trunk is up to tell it."""
        link = self.link_for(meeting)
        if link is None or not link.opened or link.closed:
            return False
        link._send(state_message("end", ended_by=ended_by))
        # The host ends it and says so over the trunk, which ends this side too; the
        # caller ends this side itself if that does not come soon.
        ended = self._ending.setdefault(meeting.id, asyncio.Event())
        try:
            async with asyncio.timeout(self.policy.end_wait_s):
                await ended.wait()
        except TimeoutError:
            log.warning("%s: the host did not confirm the end", link)
        finally:
            self._ending.pop(meeting.id, None)
        return True

    async def _ended_by_peer(self, link: TrunkLink, ended_by: str) -> None:
        meeting = link.meeting
        if not meeting.is_live:
            return
        if link.hosting and _server(ended_by) != _server(link.peer):
            raise BadMessage(f"{ended_by} is not a user of {_server(link.peer)}")
        log.info("%s: %s ended the meeting on the other side", link, ended_by)
        summary = await self.meetings.end(meeting, ended_by)
        if link.hosting:
            await self.ends.ended_by_peer(meeting, summary)

    async def close_link(self, link: TrunkLink, reason: str, say_bye: bool = True) -> None:
        """Close a trunk; the people behind it leave this side. Safe to call twice."""
        if link.closed:
            return
        if say_bye and link.opened:
            link._send(state_message("bye"))
            await asyncio.sleep(0.1)
        link.closed = True
        self._links.pop(link.trunk_id, None)
        pending = self._pending.pop(link.trunk_id, None)
        if pending is not None:
            pending[1].cancel()
        self.meetings.unwatch(link.meeting, link)
        log.info("Closing %s: %s", link, reason)
        await self.meetings.close_trunk(link.meeting, link.trunk_id)

    async def _link_closed(self, link: TrunkLink, reason: str) -> None:
        if link.closed:
            return
        log.warning("%s went down: %s", link, reason)
        await self.close_link(link, reason, say_bye=False)
        meeting = link.meeting
        if not link.hosting and meeting.is_live and not self._closing:
            self._schedule_retry(meeting)

    def _schedule_retry(self, meeting: Meeting) -> None:
        if meeting.id in self._retries:
            return
        attempt = self._attempts.get(meeting.id, 0)
        delays = self.policy.retry_delays_s
        delay = delays[min(attempt, len(delays) - 1)]
        self._attempts[meeting.id] = attempt + 1

        def retry() -> None:
            self._retries.pop(meeting.id, None)
            if meeting.is_live and self.link_for(meeting) is None:
                if any(p.via is None for p in meeting.participants.values()):
                    self._spawn(self._connect(meeting))

        self._retries[meeting.id] = asyncio.get_running_loop().call_later(delay, retry)

    def _cancel_retry(self, meeting_id: str) -> None:
        timer = self._retries.pop(meeting_id, None)
        if timer is not None:
            timer.cancel()
        self._attempts.pop(meeting_id, None)

    def _remember(self, trunk_id: str) -> None:
        self._seen[trunk_id] = None
        while len(self._seen) > _SEEN:
            self._seen.popitem(last=False)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Shutdown: every trunk closes (the other sides see their connections go, and
        come back by themselves once this bridge is up again)."""
        self._closing = True
        for timer in self._retries.values():
            timer.cancel()
        self._retries.clear()
        for link in list(self._links.values()):
            await self.close_link(link, "this bridge stops")
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
