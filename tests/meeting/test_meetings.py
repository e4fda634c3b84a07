"""The live meeting as domain code: admission, events to every door, mute and hand,
leaving, lost media, the end, and a restart; on SQLite and the real PostgreSQL, with a
recording media layer (the real SFU is tested in tests/media and tests/integration)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from bridge.clock import ManualClock
from bridge.db import Storage
from bridge.meeting.attendee import NOT_A_MEMBER, RESTARTING
from bridge.meeting.events import (
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    SpeakerChanged,
    TrackAdded,
    TrackRemoved,
    Welcome,
)
from bridge.meeting.identity import Identity
from bridge.meeting.media import (
    ActiveSpeaker,
    MediaError,
    ParticipantMediaClosed,
    TrackPublished,
    TrackUnpublished,
)
from bridge.meeting.meetings import Change, MeetingError, Meetings
from bridge.meeting.roles import Role
from tests.meeting.fakes import FakeMedia, RecordingAttendee


async def until(condition: Callable[[], bool]) -> None:
    """Wait for background work of the meeting (dismissals run as tasks)."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - the work is the meeting's own tasks
            await asyncio.sleep(0.01)


def identity(localpart: str, role: Role = Role.PARTICIPANT) -> Identity:
    return Identity(f"@{localpart}:x", "x", localpart.title(), None, role)


class World:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.clock = ManualClock()
        self.media = FakeMedia()
        self.meetings = self.make()
        self.changes: list[Change] = []

        async def listen(meeting: object, change: Change) -> None:
            self.changes.append(change)

        self.meetings.listeners.append(listen)

    def make(self) -> Meetings:
        return Meetings(self.storage.meetings, self.storage.attendance, self.media, self.clock)


@pytest.fixture
def world(storage: Storage) -> World:
    return World(storage)


async def test_lifecycle_attendance_and_restart(world: World) -> None:
    meetings, clock = world.meetings, world.clock
    meeting, created = await meetings.start("!room", "Budget review", "@alice:x")
    assert created
    again, created = await meetings.start("!room", "Other", "@bob:x")
    assert not created and again is meeting
    await meetings.join(meeting, identity("alice", Role.MODERATOR), "Alice", RecordingAttendee())
    clock.advance(60)
    bob = await meetings.join(meeting, identity("bob"), "Bob", RecordingAttendee())
    clock.advance(120)
    await bob.leave()
    await bob.leave()  # a second leave changes nothing

    # A restart: a new Meetings over the same database knows the live meeting.
    restarted = world.make()
    await restarted.load()
    restored = restarted.live_in_room("!room")
    assert restored is not None and restored.id == meeting.id
    assert restored.title == "Budget review" and restored.participants == {}

    clock.advance(60)
    summary = await restarted.end(restored, "@alice:x")
    assert summary.duration_ms == 240_000
    totals = {a.user_id: a.total_ms for a in summary.attendees}
    assert totals == {"@alice:x": 180_000, "@bob:x": 120_000}
    assert restarted.live_in_room("!room") is None
    with pytest.raises(MeetingError):
        await restarted.end(restored, "@alice:x")
    ended = await restarted.get(meeting.id)
    assert ended is not None and not ended.is_live and ended.ended_by == "@alice:x"
    assert world.changes == [Change.STARTED, Change.JOINED, Change.JOINED, Change.LEFT]


async def test_welcome_comes_first_and_everyone_hears_of_everyone(world: World) -> None:
    meeting, _ = await world.meetings.start("!room", "T", "@alice:x")
    alice_door = RecordingAttendee()
    alice = await world.meetings.join(meeting, identity("alice"), "Alice", alice_door)
    router = world.media.routers[0]
    router.on_event(TrackPublished(alice.id, f"{alice.id}/camera", "video", "camera"))
    router.on_event(ActiveSpeaker(alice.id))

    bob_door = RecordingAttendee()
    bob = await world.meetings.join(meeting, identity("bob"), "Bobby", bob_door)
    welcome = bob_door.events[0]
    assert isinstance(welcome, Welcome)
    assert welcome.participant is bob and bob.display_name == "Bobby"
    assert [p.user_id for p in welcome.others] == ["@alice:x"]
    assert [(t.participant_id, t.source) for t in welcome.tracks] == [(alice.id, "camera")]
    assert welcome.active_speaker == alice.id
    assert alice_door.kinds() == ["Welcome", "TrackAdded", "SpeakerChanged", "ParticipantJoined"]
    joined = alice_door.events[-1]
    assert isinstance(joined, ParticipantJoined) and joined.participant is bob
    # Both use the one router of the meeting.
    assert len(world.media.routers) == 1 and set(router.participants) == {alice.id, bob.id}


async def test_mute_and_hand_go_through_the_meeting(world: World) -> None:
    meeting, _ = await world.meetings.start("!room", "T", "@alice:x")
    alice_door, bob_door = RecordingAttendee(), RecordingAttendee()
    alice = await world.meetings.join(meeting, identity("alice"), "Alice", alice_door)
    await world.meetings.join(meeting, identity("bob"), "Bob", bob_door)
    await alice.set_muted(audio=True, video=False)
    await alice.raise_hand(True)
    updates = [e for e in bob_door.events if isinstance(e, ParticipantUpdated)]
    assert len(updates) == 2 and updates[-1].participant is alice
    assert alice.audio_muted and not alice.video_muted and alice.hand_raised
    # The sender hears it too, so every door shows the same state.
    assert sum(isinstance(e, ParticipantUpdated) for e in alice_door.events) == 2
    assert world.changes.count(Change.UPDATED) == 2


async def test_publish_and_answer_reach_the_participants_media(world: World) -> None:
    meeting, _ = await world.meetings.start("!room", "T", "@alice:x")
    alice = await world.meetings.join(meeting, identity("alice"), "Alice", RecordingAttendee())
    assert await alice.publish("offer", {"0": "microphone"}) == "answer to offer"
    with pytest.raises(MediaError):
        await alice.publish("bad", {"0": "microphone"})
    await alice.accept_answer("sdp")
    media = world.media.routers[0].participants[alice.id]
    assert media.published == [{"0": "microphone"}] and media.answers == ["sdp"]
    await alice.leave()
    with pytest.raises(MediaError) as refused:
        await alice.publish("offer", {"0": "microphone"})
    assert refused.value.code == "not_joined"
    with pytest.raises(MeetingError):
        await alice.raise_hand(True)


async def test_second_join_replaces_the_first_with_one_open_stay(world: World) -> None:
    meeting, _ = await world.meetings.start("!room", "T", "@alice:x")
    first_door, second_door, bob_door = (RecordingAttendee() for _ in range(3))
    bob = await world.meetings.join(meeting, identity("bob"), "Bob", bob_door)
    first = await world.meetings.join(meeting, identity("alice"), "Alice", first_door)
    world.clock.advance(1)
    second = await world.meetings.join(meeting, identity("alice"), "Alice", second_door)
    await until(lambda: bool(first_door.dismissals))
    assert [d.code for d in first_door.dismissals] == ["replaced"]
    assert not first.present and second.present
    assert set(meeting.participants) == {bob.id, second.id}
    assert world.media.routers[0].participants.keys() == {bob.id, second.id}
    left = [e for e in bob_door.events if isinstance(e, ParticipantLeft)]
    assert [e.participant_id for e in left] == [first.id]
    await first.leave()  # the old door's own clean-up changes nothing now
    assert second.present
    stays = await world.storage.attendance.for_meeting(meeting.id)
    assert [s.left_at is None for s in stays if s.user_id == "@alice:x"] == [False, True]


async def test_lost_media_dismisses_only_that_participant(world: World) -> None:
    meeting, _ = await world.meetings.start("!room", "T", "@alice:x")
    alice_door, bob_door = RecordingAttendee(), RecordingAttendee()
    alice = await world.meetings.join(meeting, identity("alice"), "Alice", alice_door)
    bob = await world.meetings.join(meeting, identity("bob"), "Bob", bob_door)
    router = world.media.routers[0]
    router.on_event(ActiveSpeaker(alice.id))
    router.on_event(ParticipantMediaClosed(alice.id, "connection lost"))
    await until(lambda: bool(alice_door.dismissals))
    assert [(d.code, d.message) for d in alice_door.dismissals] == [
        ("reconnect", "Media connection lost: connection lost")
    ]
    assert not alice.present and bob.present and not bob_door.dismissals
    # The active speaker is not left pointing at someone who is gone.
    carol = RecordingAttendee()
    await world.meetings.join(meeting, identity("carol"), "Carol", carol)
    welcome = carol.events[0]
    assert isinstance(welcome, Welcome) and welcome.active_speaker is None
    # Media closed on purpose is no loss.
    router.on_event(ParticipantMediaClosed(bob.id, "left"))
    await asyncio.sleep(0)
    assert bob.present


async def test_track_events_reach_every_door(world: World) -> None:
    meeting, _ = await world.meetings.start("!room", "T", "@alice:x")
    alice_door, bob_door = RecordingAttendee(), RecordingAttendee()
    alice = await world.meetings.join(meeting, identity("alice"), "Alice", alice_door)
    await world.meetings.join(meeting, identity("bob"), "Bob", bob_door)
    router = world.media.routers[0]
    router.on_event(TrackPublished(alice.id, f"{alice.id}/screen", "video", "screen"))
    router.on_event(TrackUnpublished(alice.id, f"{alice.id}/screen", "video", "screen"))
    router.on_event(ActiveSpeaker(alice.id))
    kinds = [type(e) for e in bob_door.events[1:]]
    assert kinds == [TrackAdded, TrackRemoved, SpeakerChanged]
    assert world.meetings.media_of(meeting.id) is not None
    assert world.meetings.media_of(meeting.id).tracks == {}  # type: ignore[union-attr]


async def test_a_failing_door_disturbs_no_other(world: World) -> None:
    class BrokenDoor(RecordingAttendee):
        def deliver(self, event: object) -> None:
            if not isinstance(event, Welcome):
                raise RuntimeError("socket gone")

    meeting, _ = await world.meetings.start("!room", "T", "@alice:x")
    await world.meetings.join(meeting, identity("broken"), "B", BrokenDoor())
    alice_door = RecordingAttendee()
    alice = await world.meetings.join(meeting, identity("alice"), "Alice", alice_door)
    await alice.raise_hand(True)
    assert alice_door.kinds()[-1] == "ParticipantUpdated"


async def test_end_dismisses_everyone_and_closes_the_router(world: World) -> None:
    meeting, _ = await world.meetings.start("!room", "T", "@alice:x")
    doors = [RecordingAttendee(), RecordingAttendee()]
    people = [
        await world.meetings.join(meeting, identity(name), name, door)
        for name, door in zip(("alice", "bob"), doors, strict=True)
    ]
    router = world.media.routers[0]
    await world.meetings.end(meeting, "@alice:x")
    assert all([d.code for d in door.dismissals] == ["meeting_ended"] for door in doors)
    assert router.closed and router.participants == {}
    assert world.meetings.media_of(meeting.id) is None
    for person in people:
        await person.leave()  # the doors' clean-up after the end is harmless
    with pytest.raises(MeetingError):
        await world.meetings.join(meeting, identity("carol"), "Carol", RecordingAttendee())
    stays = await world.storage.attendance.for_meeting(meeting.id)
    assert all(stay.left_at is not None for stay in stays)


async def test_the_router_closes_when_the_last_one_leaves(world: World) -> None:
    meeting, _ = await world.meetings.start("!room", "T", "@alice:x")
    alice = await world.meetings.join(meeting, identity("alice"), "Alice", RecordingAttendee())
    await alice.leave()
    assert world.media.routers[0].closed
    assert world.meetings.media_of(meeting.id) is None
    # The next person gets a fresh router.
    await world.meetings.join(meeting, identity("bob"), "Bob", RecordingAttendee())
    assert len(world.media.routers) == 2 and not world.media.routers[1].closed


async def test_a_refused_media_join_leaves_no_trace(world: World) -> None:
    meeting, _ = await world.meetings.start("!room", "T", "@alice:x")
    with pytest.raises(MediaError):
        await world.meetings.join(
            meeting, identity("alice"), "Alice", RecordingAttendee(), participant_id="p1"
        )
        await world.meetings.join(
            meeting, identity("bob"), "Bob", RecordingAttendee(), participant_id="p1"
        )
    stays = await world.storage.attendance.for_meeting(meeting.id)
    assert [(s.user_id, s.left_at is None) for s in stays] == [
        ("@alice:x", True),
        ("@bob:x", False),
    ]
    assert list(meeting.participants) == ["p1"]


async def test_close_dismisses_with_the_reason_and_records_leaving(world: World) -> None:
    meeting, _ = await world.meetings.start("!room", "T", "@alice:x")
    door = RecordingAttendee()
    await world.meetings.join(meeting, identity("alice"), "Alice", door)
    await world.meetings.close(RESTARTING)
    assert [d.code for d in door.dismissals] == ["reconnect"]
    assert world.media.routers[0].closed
    assert Change.LEFT in world.changes
    stays = await world.storage.attendance.for_meeting(meeting.id)
    assert stays[0].left_at is not None


async def test_someone_removed_from_the_room_is_taken_out(world: World) -> None:
    meeting, _ = await world.meetings.start("!room", "T", "@alice:x")
    alice_door, bob_door = RecordingAttendee(), RecordingAttendee()
    await world.meetings.join(meeting, identity("alice"), "Alice", alice_door)
    bob = await world.meetings.join(meeting, identity("bob"), "Bob", bob_door)
    assert await world.meetings.dismiss_user("!room", "@bob:x", NOT_A_MEMBER)
    assert [d.code for d in bob_door.dismissals] == ["unauthorized"]
    assert not bob.present and world.media.routers[0].participants.keys() == {
        p.id for p in meeting.participants.values()
    }
    assert any(isinstance(e, ParticipantLeft) for e in alice_door.events)
    assert not await world.meetings.dismiss_user("!room", "@bob:x", NOT_A_MEMBER)
    assert not await world.meetings.dismiss_user("!other", "@alice:x", NOT_A_MEMBER)


@pytest.mark.parametrize("end_first", [False, True])
async def test_a_join_racing_the_end_leaves_no_open_stay(world: World, end_first: bool) -> None:
    meeting, _ = await world.meetings.start("!room", "T", "@alice:x")
    await world.meetings.join(meeting, identity("alice"), "Alice", RecordingAttendee())
    bob_door = RecordingAttendee()

    def join() -> asyncio.Future[object]:
        return asyncio.ensure_future(
            world.meetings.join(meeting, identity("bob"), "Bob", bob_door)
        )

    def end() -> asyncio.Future[object]:
        return asyncio.ensure_future(world.meetings.end(meeting, "@alice:x"))

    if end_first:
        ending, joining = end(), join()
    else:
        joining, ending = join(), end()
    outcome, _ = await asyncio.gather(joining, ending, return_exceptions=True)
    stays = await world.storage.attendance.for_meeting(meeting.id)
    assert all(stay.left_at is not None for stay in stays)
    assert meeting.participants == {}
    if end_first:  # refused in words, with the code the door sends
        assert isinstance(outcome, MeetingError) and outcome.code == "meeting_ended"
    else:  # in, then dismissed with everyone
        assert [d.code for d in bob_door.dismissals] == ["meeting_ended"]
