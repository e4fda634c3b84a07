"""All meetings of one bridge: the one place where a meeting lives.

Start and end; who is in each live meeting, what they publish and receive, mute, hand,
active speaker; attendance, persisted as it changes. Doors (our WebSocket, and later the
LiveKit protocol, trunks and in-process listeners) admit people with :meth:`Meetings.join`
and act through the :class:`~bridge.meeting.live.Participant` they get back; the media
router of each live meeting is opened through the :class:`~bridge.meeting.media.MediaService`
interface and driven from here only.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from enum import Enum
from typing import Any

from ..clock import Clock
from ..refusal import Refusal
from .attendee import MEETING_ENDED, REPLACED, Attendee, Dismissal
from .events import (
    Caption,
    CaptionsStatus,
    CaptureChanged,
    MeetingEnded,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    SpeakerChanged,
    Track,
    TrackAdded,
    TrackRemoved,
    Welcome,
)
from .identity import Identity
from .live import LiveMeeting, Participant, Watcher
from .media import (
    ActiveSpeaker,
    MediaError,
    MediaEvent,
    MediaRouter,
    MediaService,
    MediaSink,
    ParticipantMediaClosed,
    TrackPublished,
    TrackUnpublished,
    TrunkLimits,
    TrunkListener,
    TrunkMedia,
)
from .meeting import (
    AttendeeSummary,
    Meeting,
    MeetingState,
    MeetingSummary,
    Stay,
    new_meeting_id,
)
from .store import AttendanceStore, MeetingStore


class Change(Enum):
    """What happened to a meeting, as told to listeners."""

    STARTED = "started"
    ENDED = "ended"
    JOINED = "joined"
    LEFT = "left"
    UPDATED = "updated"
    #: Recording or transcription started or stopped.
    CAPTURE = "capture"


MeetingListener = Callable[[Meeting, Change], Awaitable[None]]

log = logging.getLogger("visio.meeting")

# Media closed for these reasons was closed on purpose, not lost.
_CLOSED_ON_PURPOSE = frozenset({"left", "router closed"})


class MeetingError(Refusal):
    """Something a user asked that the meeting cannot do; the message says why."""

    def __init__(self, message: str, code: str = "meeting_ended") -> None:
        super().__init__(code, message)


def new_participant_id() -> str:
    return "p" + secrets.token_hex(6)


class Meetings:
    """The meetings of one bridge, kept in memory and in the database.

    Listeners hear about every change (start, end, join, leave, update) so the Matrix
    side can keep room state in step; they run after the change is stored.
    """

    def __init__(
        self,
        meetings: MeetingStore,
        attendance: AttendanceStore,
        media: MediaService,
        clock: Clock,
    ) -> None:
        self.store = meetings
        self.attendance = attendance
        self.media = media
        self.clock = clock
        self._live_by_room: dict[str, Meeting] = {}
        self._live_by_id: dict[str, Meeting] = {}
        self._media_of: dict[str, LiveMeeting] = {}
        self._room_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.listeners: list[MeetingListener] = []
        #: The MatrixRTC identity of this bridge's own people who come through a door
        #: without a call membership of their own (the bridge publishes one for them),
        #: from their user id; None: nobody publishes memberships for them.
        self.rtc_identity_for: Callable[[str], str] | None = None
        #: In-process listeners (recorder, transcriber) by meeting: attached to the
        #: meeting's router whenever it is open.
        self._sinks: dict[str, list[MediaSink]] = {}

    # Meetings ----------------------------------------------------------------------

    async def load(self) -> None:
        """Restore the live meetings after a restart. Nobody is in them yet: media
        sessions do not survive a restart, so open stays are closed now."""
        now = self.clock.now_ms()
        for meeting in await self.store.all_live():
            await self.attendance.close_all(meeting.id, now)
            self._remember(meeting)
        log.info("Restored %d live meeting(s)", len(self._live_by_id))

    def _lock(self, room_id: str) -> asyncio.Lock:
        return self._room_locks.setdefault(room_id, asyncio.Lock())

    def _remember(self, meeting: Meeting) -> None:
        self._live_by_room[meeting.room_id] = meeting
        self._live_by_id[meeting.id] = meeting

    def _forget(self, meeting: Meeting) -> None:
        self._live_by_room.pop(meeting.room_id, None)
        self._live_by_id.pop(meeting.id, None)

    def live_in_room(self, room_id: str) -> Meeting | None:
        return self._live_by_room.get(room_id)

    def live(self, meeting_id: str) -> Meeting | None:
        return self._live_by_id.get(meeting_id)

    def all_live(self) -> list[Meeting]:
        return list(self._live_by_id.values())

    async def get(self, meeting_id: str) -> Meeting | None:
        """A live meeting, or an ended one from the database."""
        live = self._live_by_id.get(meeting_id)
        if live is not None:
            return live
        return await self.store.get(meeting_id)

    async def start(self, room_id: str, title: str, started_by: str) -> tuple[Meeting, bool]:
        """Start the room's meeting; (meeting, False) when one is already live."""
        async with self._lock(room_id):
            existing = self._live_by_room.get(room_id)
            if existing is not None:
                return existing, False
            meeting_id = new_meeting_id()
            meeting = Meeting(
                id=meeting_id,
                room_id=room_id,
                title=title,
                started_by=started_by,
                started_at=self.clock.now_ms(),
                widget_id=f"visio_{meeting_id}",
            )
            await self.store.insert(meeting)
            self._remember(meeting)
        log.info("Meeting %s started in %s by %s", meeting.id, room_id, started_by)
        await self._notify(meeting, Change.STARTED)
        return meeting, True

    async def start_hosted_elsewhere(
        self,
        room_id: str,
        meeting_id: str,
        title: str,
        started_by: str,
        started_at: int,
        host: str,
    ) -> Meeting | None:
        """Keep this bridge's side of a meeting another agency's bridge (bot ``host``)
        hosts in a room both bridges serve, under the host's meeting id, so that this
        bridge's people join it here. Returns the meeting (the one already kept when it is
        the same), or None when the room has another live meeting or the id is taken."""
        async with self._lock(room_id):
            existing = self._live_by_room.get(room_id)
            if existing is not None:
                return existing if existing.id == meeting_id and existing.host == host else None
            if self._live_by_id.get(meeting_id) or await self.store.get(meeting_id):
                return None
            meeting = Meeting(
                id=meeting_id,
                room_id=room_id,
                title=title,
                started_by=started_by,
                started_at=started_at,
                widget_id=f"visio_{meeting_id}",
                host=host,
            )
            await self.store.insert(meeting)
            self._remember(meeting)
        log.info("Meeting %s in %s is hosted by %s; serving this side", meeting_id, room_id, host)
        await self._notify(meeting, Change.STARTED)
        return meeting

    async def end(
        self, meeting: Meeting, ended_by: str, dismissal: Dismissal = MEETING_ENDED
    ) -> MeetingSummary:
        """End a live meeting: everyone is dismissed (told ``dismissal``), media is
        released, the row is closed, and a summary is made."""
        async with self._lock(meeting.room_id):
            if not meeting.is_live:
                raise MeetingError("This meeting has already ended.")
            now = self.clock.now_ms()
            meeting.state = MeetingState.ENDED
            meeting.ended_at = now
            meeting.ended_by = ended_by
            present = list(meeting.participants.values())
            meeting.participants.clear()
            for participant in present:
                if participant.via is not None:
                    await self._count_remote_time(participant, now)
            await self.attendance.close_all(meeting.id, now)
            await self.store.save(meeting)
            self._forget(meeting)
            live = self._media_of.pop(meeting.id, None)
        log.info("Meeting %s ended by %s", meeting.id, ended_by)
        if live is not None:
            for watcher in list(live.watchers):
                try:
                    watcher.deliver(MeetingEnded(ended_by))
                except Exception:
                    log.exception("Telling %s that %s ended failed", watcher, meeting.id)
            live.trunks.clear()
        await self._release(live, present, dismissal)
        self._sinks.pop(meeting.id, None)
        await self._notify(meeting, Change.ENDED)
        summary = await self.summary(meeting)
        # Other agencies' people's time was kept for the summary only.
        await self.attendance.forget_remote_times(meeting.id)
        return summary

    async def set_capture(
        self, meeting: Meeting, *, recording: bool | None = None, transcribing: bool | None = None
    ) -> bool:
        """Turn recording or transcription on or off (None leaves it as it is); stored,
        then told to everyone in the meeting and to listeners. False when nothing
        changed."""
        async with self._lock(meeting.room_id):
            if not meeting.is_live:
                raise MeetingError("This meeting has ended.")
            before = (meeting.recording, meeting.transcribing)
            after = (
                before[0] if recording is None else recording,
                before[1] if transcribing is None else transcribing,
            )
            if after == before:
                return False
            meeting.recording, meeting.transcribing = after
            try:
                await self.store.save(meeting)
            except Exception:
                meeting.recording, meeting.transcribing = before
                raise
        log.info(
            "Meeting %s: recording %s, transcription %s",
            meeting.id,
            "on" if meeting.recording else "off",
            "on" if meeting.transcribing else "off",
        )
        live = self._media_of.get(meeting.id)
        if live is not None:
            live.broadcast(CaptureChanged(meeting, meeting.recorded, meeting.transcribed))
        await self._notify(meeting, Change.CAPTURE)
        return True

    def set_capture_elsewhere(
        self, meeting: Meeting, trunk_id: str, capture: tuple[bool, bool] | None
    ) -> None:
        """What the bridges behind a trunk capture (recording, transcribing), as it
        said; None forgets it (the trunk closed). Everyone is told when that changes
        what they are told."""
        before = (meeting.recorded, meeting.transcribed)
        if capture is None:
            meeting.capture_elsewhere.pop(trunk_id, None)
        else:
            meeting.capture_elsewhere[trunk_id] = capture
        live = self._media_of.get(meeting.id)
        if live is not None and (meeting.recorded, meeting.transcribed) != before:
            live.broadcast(CaptureChanged(meeting, meeting.recorded, meeting.transcribed))

    async def set_notice(self, meeting: Meeting, event_id: str) -> None:
        """Remember the room message that announced the meeting."""
        meeting.notice_event = event_id
        await self.store.save(meeting)

    def caption(
        self, meeting: Meeting, participant_id: str, text: str, via: str | None = None
    ) -> None:
        """A live caption of what someone in the meeting said, for every door (``via``:
        the trunk it came over)."""
        live = self._media_of.get(meeting.id)
        if live is not None and participant_id in meeting.participants and text:
            live.broadcast(Caption(participant_id, text, via))

    def captions_status(self, meeting: Meeting, limited: bool, message: str) -> None:
        """Tell everyone whether captions are limited now, and why (people who join
        later are told with their welcome)."""
        meeting.captions_limited = (message or "Captions are limited.") if limited else None
        live = self._media_of.get(meeting.id)
        if live is not None:
            live.broadcast(CaptionsStatus(limited, message))

    def add_sink(self, meeting: Meeting, sink: MediaSink) -> None:
        """Attach an in-process listener that only receives (a recorder, a transcriber)
        to a live meeting: it is offered every track published there, now and whenever
        people are in it, until :meth:`remove_sink` or the end."""
        if not meeting.is_live:
            raise MeetingError("This meeting has ended.")
        sinks = self._sinks.setdefault(meeting.id, [])
        if sink in sinks:
            return
        sinks.append(sink)
        live = self._media_of.get(meeting.id)
        if live is not None and live.router is not None:
            live.router.add_sink(sink)

    def remove_sink(self, meeting: Meeting, sink: MediaSink) -> None:
        sinks = self._sinks.get(meeting.id, [])
        if sink in sinks:
            sinks.remove(sink)
        if not sinks:
            self._sinks.pop(meeting.id, None)
        live = self._media_of.get(meeting.id)
        if live is not None and live.router is not None:
            live.router.remove_sink(sink)

    async def move(self, meeting: Meeting, room_id: str) -> None:
        """The meeting's room was replaced (a room upgrade): the meeting, its people
        and its link go on, and from now on it belongs to ``room_id``."""
        async with self._lock(meeting.room_id):
            if not meeting.is_live:
                raise MeetingError("This meeting has already ended.")
            if self._live_by_room.get(room_id) is not None:
                raise MeetingError("The new room already has a live meeting.", "conflict")
            old_room = meeting.room_id
            meeting.room_id = room_id
            try:
                await self.store.save(meeting)
            except Exception:
                meeting.room_id = old_room
                raise
            self._live_by_room.pop(old_room, None)
            self._live_by_room[room_id] = meeting
        log.info("Meeting %s moved from %s to %s", meeting.id, old_room, room_id)

    async def summary(self, meeting: Meeting) -> MeetingSummary:
        now = self.clock.now_ms()
        totals: dict[str, AttendeeSummary] = {}
        for stay in await self.attendance.for_meeting(meeting.id):
            stay_ms = (stay.left_at if stay.left_at is not None else now) - stay.joined_at
            before = totals.get(stay.user_id)
            totals[stay.user_id] = AttendeeSummary(
                user_id=stay.user_id,
                display_name=stay.display_name,
                total_ms=(before.total_ms if before else 0) + max(0, stay_ms),
            )
        remote = {t.user_id: t for t in await self.attendance.remote_times(meeting.id)}
        for participant in meeting.participants.values():
            if participant.via is not None:
                before = remote.get(participant.user_id)
                remote[participant.user_id] = AttendeeSummary(
                    participant.user_id,
                    participant.display_name,
                    (before.total_ms if before else 0) + max(0, now - participant.joined_at),
                )
        for user_id, person in remote.items():
            totals.setdefault(user_id, person)
        return MeetingSummary(
            meeting_id=meeting.id,
            title=meeting.title,
            duration_ms=meeting.duration_ms(now),
            attendees=list(totals.values()),
        )

    # People ------------------------------------------------------------------------

    async def join(
        self,
        meeting: Meeting,
        identity: Identity,
        display_name: str,
        attendee: Attendee,
        *,
        participant_id: str | None = None,
        trunk: tuple[str, TrunkMedia] | None = None,
        rtc_identity: str | None = None,
    ) -> Participant:
        """Admit a verified person through a door.

        ``trunk`` (its id and media) admits someone another agency's bridge serves: their
        media comes over that trunk, and their attendance is that bridge's to store.
        ``rtc_identity``: the LiveKit identity of their own MatrixRTC call membership
        (Element Call), or the one the other bridge gave them; this bridge's own people
        without one get :attr:`rtc_identity_for` theirs.

        The attendee first gets :class:`~bridge.meeting.events.Welcome`, then the
        server's offers for what they receive; the others hear they joined. A second
        join of the same user replaces the first (a reconnect, or another device): the
        first is dismissed, and one stay stays open. Raises :class:`MeetingError` when the
        meeting has ended, :class:`~bridge.meeting.media.MediaError` for a bad id.
        """
        if not meeting.is_live:
            raise MeetingError("This meeting has ended.")
        live = self._live_media(meeting)
        live.admitting += 1
        try:
            async with self._lock(meeting.room_id):
                if rtc_identity is None and trunk is None and self.rtc_identity_for:
                    rtc_identity = self.rtc_identity_for(identity.user_id)
                participant = await self._admit(
                    live, identity, display_name, attendee, participant_id, trunk, rtc_identity
                )
        finally:
            live.admitting -= 1
            await self._close_if_empty(live)
        log.info("%s joined meeting %s as %s", identity.user_id, meeting.id, participant.id)
        await self._notify(meeting, Change.JOINED)
        return participant

    async def _admit(
        self,
        live: LiveMeeting,
        identity: Identity,
        display_name: str,
        attendee: Attendee,
        participant_id: str | None,
        trunk: tuple[str, TrunkMedia] | None = None,
        rtc_identity: str | None = None,
    ) -> Participant:
        meeting = live.meeting
        if not meeting.is_live:
            raise MeetingError("This meeting has ended.")
        previous = meeting.participant_of(identity.user_id)
        if previous is not None:
            await self._remove(live, previous)
            self._spawn(self._dismiss(previous, REPLACED))
        now = self.clock.now_ms()
        participant = Participant(
            self,
            meeting,
            participant_id or new_participant_id(),
            identity,
            display_name,
            now,
            attendee,
            via=trunk[0] if trunk is not None else None,
            rtc_identity=rtc_identity,
        )
        router = self._router(live)
        if trunk is not None:
            if live.trunks.get(trunk[0]) is not trunk[1]:
                raise MeetingError("That trunk is closed.", code="not_joined")
            participant.media = trunk[1].add_remote(participant.id)
        else:
            await self.attendance.record_join(
                Stay(meeting.id, identity.user_id, display_name, joined_at=now)
            )
            # From here to the welcome nothing awaits: the welcome goes out before the
            # router's first offer, and before anyone else hears of the newcomer.
            try:
                participant.media = router.add_participant(participant.id, attendee.send_offer)
            except MediaError:
                await self.attendance.record_leave(meeting.id, identity.user_id, now)
                raise
        meeting.participants[participant.id] = participant
        attendee.deliver(
            Welcome(
                participant=participant,
                meeting=meeting,
                others=tuple(p for p in meeting.participants.values() if p is not participant),
                tracks=tuple(live.tracks.values()),
                active_speaker=live.active_speaker,
            )
        )
        live.broadcast(ParticipantJoined(participant), exclude=participant.id)
        return participant

    async def update(
        self,
        participant: Participant,
        *,
        audio_muted: bool | None = None,
        video_muted: bool | None = None,
        hand_raised: bool | None = None,
        encrypted: bool | None = None,
    ) -> None:
        """Change what others see of a participant (mute, hand, whether their media is
        end-to-end encrypted); everyone is told."""
        if not participant.present:
            raise MeetingError("You are no longer in this meeting.", code="not_joined")
        if audio_muted is not None:
            participant.audio_muted = audio_muted
        if video_muted is not None:
            participant.video_muted = video_muted
        if hand_raised is not None:
            participant.hand_raised = hand_raised
        if encrypted is not None:
            participant.encrypted = encrypted
        live = self._media_of.get(participant.meeting.id)
        if live is not None:
            live.broadcast(ParticipantUpdated(participant))
        await self._notify(participant.meeting, Change.UPDATED)

    async def leave(self, participant: Participant) -> None:
        """A participant leaves; nothing happens if they are already out."""
        meeting = participant.meeting
        live = self._media_of.get(meeting.id)
        if live is None or not participant.present:
            return
        async with self._lock(meeting.room_id):
            removed = await self._remove(live, participant)
        if removed:
            log.info("%s left meeting %s", participant.user_id, meeting.id)
            await self._notify(meeting, Change.LEFT)
        await self._close_if_empty(live)

    async def dismiss_user(self, room_id: str, user_id: str, dismissal: Dismissal) -> bool:
        """Take a user out of their room's live meeting, whatever door they came
        through (they left the room, were kicked or banned); False if they were not in."""
        meeting = self._live_by_room.get(room_id)
        participant = meeting.participant_of(user_id) if meeting is not None else None
        if participant is None:
            return False
        log.info("%s is no longer allowed in meeting %s", user_id, participant.meeting.id)
        await self._drop(participant, dismissal)
        return True

    async def _remove(self, live: LiveMeeting, participant: Participant) -> bool:
        meeting = live.meeting
        if not participant.present:
            return False
        del meeting.participants[participant.id]
        if live.active_speaker == participant.id:
            live.active_speaker = None
        if participant.media is not None:
            await participant.media.close()
        if participant.via is None:
            await self.attendance.record_leave(
                meeting.id, participant.user_id, self.clock.now_ms()
            )
        else:
            await self._count_remote_time(participant, self.clock.now_ms())
        live.broadcast(ParticipantLeft(participant.id))
        return True

    async def _count_remote_time(self, participant: Participant, now: int) -> None:
        await self.attendance.add_remote_time(
            participant.meeting.id,
            participant.user_id,
            participant.display_name,
            max(0, now - participant.joined_at),
        )

    async def _dismiss(self, participant: Participant, dismissal: Dismissal) -> None:
        try:
            await participant.attendee.dismiss(dismissal)
        except Exception:
            log.exception("Dismissing %s failed", participant)

    async def _drop(self, participant: Participant, dismissal: Dismissal) -> None:
        """Take someone out of the meeting (lost media, shutdown) and tell them why."""
        await self.leave(participant)
        await self._dismiss(participant, dismissal)

    # Media -------------------------------------------------------------------------

    def _live_media(self, meeting: Meeting) -> LiveMeeting:
        live = self._media_of.get(meeting.id)
        if live is None:
            live = self._media_of[meeting.id] = LiveMeeting(meeting)
        return live

    def _router(self, live: LiveMeeting) -> MediaRouter:
        if live.router is None:
            live.router = self.media.open_router(
                live.meeting.id, lambda event: self._media_event(live, event)
            )
            log.info("Media router opened for meeting %s", live.meeting.id)
            for sink in self._sinks.get(live.meeting.id, []):
                live.router.add_sink(sink)
        return live.router

    # Trunks ------------------------------------------------------------------------

    def open_trunk(
        self, meeting: Meeting, trunk_id: str, listener: TrunkListener, limits: TrunkLimits
    ) -> TrunkMedia:
        """A trunk to another agency's bridge for a live meeting: every track published
        here crosses it once, and the other side's people join with ``trunk=``. It keeps
        the meeting's media open until :meth:`close_trunk`."""
        if not meeting.is_live:
            raise MeetingError("This meeting has ended.")
        live = self._live_media(meeting)
        if trunk_id in live.trunks:
            raise MeetingError("That trunk is already open.", code="conflict")
        trunk = self._router(live).add_trunk(trunk_id, listener, limits)
        live.trunks[trunk_id] = trunk
        log.info("Trunk %s opened for meeting %s", trunk_id, meeting.id)
        return trunk

    async def close_trunk(self, meeting: Meeting, trunk_id: str, reason: str = "left") -> None:
        """Close a trunk: the people behind it leave the meeting here. Safe to call
        more than once."""
        live = self._media_of.get(meeting.id)
        trunk = live.trunks.pop(trunk_id, None) if live is not None else None
        if live is None or trunk is None:
            return
        behind = [p for p in meeting.participants.values() if p.via == trunk_id]
        for participant in behind:
            await self.leave(participant)
        await trunk.close(reason)
        self.set_capture_elsewhere(meeting, trunk_id, None)
        log.info("Trunk %s of meeting %s closed: %s", trunk_id, meeting.id, reason)
        await self._close_if_empty(live)

    def watch(self, meeting: Meeting, watcher: Watcher) -> None:
        """Let ``watcher`` hear every event of the live meeting (a trunk, which tells the
        other bridge), until :meth:`unwatch`."""
        live = self._live_media(meeting)
        if watcher not in live.watchers:
            live.watchers.append(watcher)

    def unwatch(self, meeting: Meeting, watcher: Watcher) -> None:
        live = self._media_of.get(meeting.id)
        if live is not None and watcher in live.watchers:
            live.watchers.remove(watcher)

    def set_speaker(self, meeting: Meeting, participant_id: str | None) -> None:
        """The active speaker as the host bridge decided it, for a meeting hosted
        elsewhere (whose own router's choice is not used)."""
        live = self._media_of.get(meeting.id)
        if live is None or live.active_speaker == participant_id:
            return
        if participant_id is not None and participant_id not in meeting.participants:
            return
        live.active_speaker = participant_id
        if participant_id is not None:
            live.broadcast(SpeakerChanged(participant_id))

    def media_of(self, meeting_id: str) -> LiveMeeting | None:
        """The media side of a meeting that has people in it (None when empty)."""
        return self._media_of.get(meeting_id)

    def _media_event(self, live: LiveMeeting, event: MediaEvent) -> None:
        if isinstance(event, TrackPublished):
            track = Track(event.participant_id, event.source, event.kind, event.mime_type)
            live.tracks[event.track_id] = track
            live.broadcast(TrackAdded(track))
        elif isinstance(event, TrackUnpublished):
            live.tracks.pop(event.track_id, None)
            live.broadcast(TrackRemoved(Track(event.participant_id, event.source, event.kind)))
        elif isinstance(event, ActiveSpeaker):
            if live.meeting.hosted_elsewhere and live.trunks:
                return  # the host decides, and its choice comes over the trunk
            live.active_speaker = event.participant_id
            live.broadcast(SpeakerChanged(event.participant_id))
        elif isinstance(event, ParticipantMediaClosed):
            if event.reason in _CLOSED_ON_PURPOSE:
                return
            participant = live.meeting.participants.get(event.participant_id)
            if participant is not None:
                log.info(
                    "Media of %s in %s closed: %s", participant, live.meeting.id, event.reason
                )
                self._spawn(
                    self._drop(
                        participant,
                        Dismissal("reconnect", f"Media connection lost: {event.reason}"),
                    )
                )

    async def _close_if_empty(self, live: LiveMeeting) -> None:
        if not live.empty or self._media_of.get(live.meeting.id) is not live:
            return
        del self._media_of[live.meeting.id]
        if live.router is not None:
            await live.router.close()
            log.info("Media router closed for meeting %s (nobody left)", live.meeting.id)

    async def _release(
        self, live: LiveMeeting | None, present: list[Participant], dismissal: Dismissal
    ) -> None:
        """After an end: close everyone's media and door, then the router."""
        for participant in present:
            if participant.media is not None:
                await participant.media.close()
        await asyncio.gather(*(self._dismiss(p, dismissal) for p in present))
        if live is not None and live.router is not None:
            await live.router.close()

    async def close(self, dismissal: Dismissal) -> None:
        """Shutdown: everyone leaves (attendance and room state are kept right), is told
        why, and every router closes."""
        for live in list(self._media_of.values()):
            present = list(live.meeting.participants.values())
            await asyncio.gather(*(self._drop(p, dismissal) for p in present))
            for trunk_id in list(live.trunks):
                await self.close_trunk(live.meeting, trunk_id, "router closed")
            await self._close_if_empty(live)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        """Per meeting with people: how many, and what the router holds."""
        return {
            meeting_id: {
                "participants": len(live.meeting.participants),
                "router": live.router.stats() if live.router is not None else None,
            }
            for meeting_id, live in self._media_of.items()
        }

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self, meeting: Meeting, change: Change) -> None:
        for listener in self.listeners:
            try:
                await listener(meeting, change)
            except Exception:
                log.exception("Meeting listener failed for %s", meeting.id)
