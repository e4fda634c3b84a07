"""Recording and transcription as the meeting knows them: the flags, stored and told to
every door and listener, what other agencies' bridges capture, and in-process listeners
attached whenever the meeting's router is open."""

from __future__ import annotations

import pytest

from bridge.db import Storage
from bridge.meeting.events import CaptureChanged, Welcome
from bridge.meeting.media import FrameHandler, TrackPublished
from bridge.meeting.meetings import Change, MeetingError
from tests.meeting.fakes import RecordingAttendee
from tests.meeting.test_meetings import World, identity


class Sink:
    def track_started(self, track: TrackPublished) -> FrameHandler | None:
        return None

    def track_ended(self, track_id: str) -> None:
        pass


@pytest.fixture
def world(storage: Storage) -> World:
    return World(storage)


async def test_capture_is_stored_told_to_everyone_and_survives_a_restart(world: World) -> None:
    meeting, _ = await world.meetings.start("!room:x", "Weekly", "@alice:x")
    door = RecordingAttendee()
    await world.meetings.join(meeting, identity("alice"), "Alice", door)
    assert await world.meetings.set_capture(meeting, recording=True)
    assert not await world.meetings.set_capture(meeting, recording=True)  # no change
    [told] = [e for e in door.events if isinstance(e, CaptureChanged)]
    assert (told.recording, told.transcribing) == (True, False)
    assert world.changes[-1] == Change.CAPTURE

    await world.meetings.set_capture(meeting, transcribing=True)
    restarted = world.make()
    await restarted.load()
    again = restarted.live(meeting.id)
    assert again is not None and (again.recording, again.transcribing) == (True, True)

    # Someone joining later learns it with the welcome.
    late = RecordingAttendee()
    await restarted.join(again, identity("bob"), "Bob", late)
    welcome = late.events[0]
    assert isinstance(welcome, Welcome) and welcome.meeting.recorded

    await restarted.end(again, "@alice:x")
    with pytest.raises(MeetingError):
        await restarted.set_capture(again, recording=False)


async def test_what_other_bridges_capture_is_told_and_forgotten_with_their_trunk(
    world: World,
) -> None:
    meeting, _ = await world.meetings.start("!room:x", "Across", "@alice:x")
    door = RecordingAttendee()
    await world.meetings.join(meeting, identity("alice"), "Alice", door)
    world.meetings.set_capture_elsewhere(meeting, "trunk-b", (True, False))
    assert meeting.recorded and not meeting.recording  # this bridge does not record
    assert meeting.capture_except("trunk-b") == (False, False)  # what B is told back
    assert meeting.capture_except("trunk-c") == (True, False)  # what C is told
    world.meetings.set_capture_elsewhere(meeting, "trunk-c", (True, False))
    world.meetings.set_capture_elsewhere(meeting, "trunk-b", None)
    assert meeting.recorded  # C still records
    world.meetings.set_capture_elsewhere(meeting, "trunk-c", None)
    assert not meeting.recorded
    told = [e.recording for e in door.events if isinstance(e, CaptureChanged)]
    assert told == [True, False]  # only the changes people see


async def test_sinks_follow_the_router_across_empty_spells(world: World) -> None:
    meeting, _ = await world.meetings.start("!room:x", "Listened", "@alice:x")
    sink = Sink()
    world.meetings.add_sink(meeting, sink)  # nobody in yet: no router
    assert world.media.routers == []
    alice = await world.meetings.join(meeting, identity("alice"), "Alice", RecordingAttendee())
    assert world.media.routers[-1].sinks == [sink]
    await alice.leave()  # the router closes when empty
    assert world.media.routers[-1].closed
    await world.meetings.join(meeting, identity("bob"), "Bob", RecordingAttendee())
    assert len(world.media.routers) == 2 and world.media.routers[-1].sinks == [sink]
    world.meetings.remove_sink(meeting, sink)
    assert world.media.routers[-1].sinks == []
    world.meetings.add_sink(meeting, sink)
    await world.meetings.end(meeting, "@alice:x")
    with pytest.raises(MeetingError):
        world.meetings.add_sink(meeting, sink)
