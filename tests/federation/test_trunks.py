"""The trunk door between two (and three) bridges, over fake media and fake Matrix: who
crosses, what each side sees, the end, refusals and bad input. The real connection is in
tests/media/test_trunk.py; real Synapses and bridges in tests/integration."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mautrix.util.async_db import Database

from bridge.clock import ManualClock
from bridge.db import Storage, upgrade_table
from bridge.federation import TRUNK_ANSWER, TRUNK_OFFER, TrunkPolicy, Trunks
from bridge.federation import trunks as trunks_module
from bridge.meeting.events import (
    Caption,
    CaptureChanged,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
)
from bridge.meeting.identity import Identity
from bridge.meeting.live import Participant
from bridge.meeting.media import ActiveSpeaker
from bridge.meeting.meeting import Meeting, MeetingSummary
from bridge.meeting.meetings import Meetings
from bridge.meeting.roles import Role
from tests.meeting.fakes import FakeMedia, FakeTrunk, RecordingAttendee

ROOM = "!room:a.test"


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - the work is the doors' own tasks
            await asyncio.sleep(0.01)


class Side:
    """One agency: its meetings, its trunk door, what its bot sent in the room."""

    def __init__(self, name: str, db: Database, exchange: dict[str, list[FakeTrunk]]) -> None:
        self.name = name
        self.bot = f"@visio:{name}.test"
        self.storage = Storage(db)
        self.clock = ManualClock()
        self.media = FakeMedia(exchange)
        self.meetings = Meetings(
            self.storage.meetings, self.storage.attendance, self.media, self.clock
        )
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.peer_ends: list[MeetingSummary] = []
        self.peers: dict[str, Side] = {}
        self.trunks: Trunks | None = None

    def start_door(self, trusted: set[str]) -> None:
        self.trunks = Trunks(
            self.meetings,
            self,
            TrunkPolicy(
                own_bot=self.bot,
                peer_bridges=frozenset(trusted),
                retry_delays_s=(0.05,),
                answer_timeout_s=2.0,
            ),
            self,
        )
        self.meetings.listeners.append(self.trunks.meeting_changed)

    @property
    def door(self) -> Trunks:
        assert self.trunks is not None
        return self.trunks

    # TrunkSignals: the room event reaches every other bridge's bot in the room.
    async def send_trunk_event(self, room_id: str, event_type: str, content: dict[str, Any]):
        self.sent.append((event_type, content))
        for peer in self.peers.values():
            handler = (
                peer.door.offer_received
                if event_type == TRUNK_OFFER
                else peer.door.answer_received
            )
            asyncio.get_running_loop().call_soon(
                lambda h=handler: asyncio.ensure_future(h(room_id, self.bot, dict(content)))
            )

    # PeerEnds
    async def ended_by_peer(self, meeting: Meeting, summary: MeetingSummary) -> None:
        self.peer_ends.append(summary)

    def person(self, localpart: str, role: Role = Role.PARTICIPANT) -> Identity:
        server = f"{self.name}.test"
        return Identity(f"@{localpart}:{server}", server, localpart.title(), None, role)

    def trunk_media(self) -> list[FakeTrunk]:
        return [t for r in self.media.routers for t in r.trunks.values()]


@pytest.fixture
async def sides(tmp_path: Path) -> AsyncIterator[dict[str, Side]]:
    exchange: dict[str, list[FakeTrunk]] = {}
    made: dict[str, Side] = {}
    dbs = []
    for name in ("a", "b", "c"):
        db = Database.create(f"sqlite:{tmp_path}/{name}.db", upgrade_table=upgrade_table)
        await db.start()
        dbs.append(db)
        made[name] = Side(name, db, exchange)
    for side in made.values():
        side.start_door({"@visio:a.test", "@visio:b.test", "@visio:c.test"} - {side.bot})
        side.peers = {n: s for n, s in made.items() if s is not side}
    try:
        yield made
    finally:
        for side in made.values():
            await side.door.close()
        for db in dbs:
            await db.stop()


async def hosted(a: Side, *others: Side) -> Meeting:
    meeting, _ = await a.meetings.start(ROOM, "Inter-agency", "@alice:a.test")
    for other in others:
        kept = await other.meetings.start_hosted_elsewhere(
            ROOM, meeting.id, meeting.title, meeting.started_by, meeting.started_at, a.bot
        )
        assert kept is not None and kept.id == meeting.id and kept.hosted_elsewhere
    return meeting


@dataclass
class Linked:
    """A meeting hosted by A, with Alice on A and Bob on B, the trunk up between them."""

    meeting_a: Meeting
    meeting_b: Meeting
    alice: Participant
    bob: Participant
    bob_door: RecordingAttendee


async def linked(a: Side, b: Side, bob_role: Role = Role.PARTICIPANT) -> Linked:
    meeting_a = await hosted(a, b)
    meeting_b = b.meetings.live(meeting_a.id)
    assert meeting_b is not None
    alice = await a.meetings.join(meeting_a, a.person("alice"), "Alice", RecordingAttendee())
    bob_door = RecordingAttendee()
    bob = await b.meetings.join(meeting_b, b.person("bob", bob_role), "Bob", bob_door)
    await until(lambda: bob.id in meeting_a.participants)
    return Linked(meeting_a, meeting_b, alice, bob, bob_door)


def names(meeting: Meeting) -> set[str]:
    return {p.user_id for p in meeting.participants.values()}


async def test_two_sides_one_meeting_both_ways(sides: dict[str, Side]) -> None:
    a, b = sides["a"], sides["b"]
    meeting_a = await hosted(a, b)
    meeting_b = b.meetings.live(meeting_a.id)
    assert meeting_b is not None
    alice_door = RecordingAttendee()
    alice = await a.meetings.join(meeting_a, a.person("alice"), "Alice", alice_door)
    assert a.sent == []  # the host never offers
    bob_door = RecordingAttendee()
    # Bob came through B's LiveKit door (Element Call): his call membership's identity.
    bob = await b.meetings.join(
        meeting_b, b.person("bob"), "Bob", bob_door, rtc_identity="@bob:b.test:BDEVICE"
    )

    # B offers once, A answers, and each side admits the other's people behind the trunk.
    await until(lambda: names(meeting_a) == names(meeting_b) == {alice.user_id, bob.user_id})
    assert [kind for kind, _ in b.sent] == [TRUNK_OFFER]
    assert [kind for kind, _ in a.sent] == [TRUNK_ANSWER]
    bob_at_a = meeting_a.participants[bob.id]
    alice_at_b = meeting_b.participants[alice.id]
    assert bob_at_a.via is not None and alice_at_b.via is not None
    assert bob_at_a.display_name == "Bob" and bob_at_a.server == "b.test"
    # Element Call clients on A's side know him by the identity B gave him.
    assert bob_at_a.rtc_identity == "@bob:b.test:BDEVICE"
    assert alice_at_b.rtc_identity is None
    assert any(
        isinstance(e, ParticipantJoined) and e.participant.id == bob.id for e in alice_door.events
    )
    assert any(
        isinstance(e, ParticipantJoined) and e.participant.id == alice.id for e in bob_door.events
    )
    # Their media comes over the trunk: no connection of their own on either side.
    assert a.trunk_media()[0].remotes == [bob.id]
    host_end = a.trunk_media()[0]
    assert b.trunk_media()[0].remotes == [alice.id]

    # Mute and hand cross.
    await bob.set_muted(audio=True, video=False)
    await until(lambda: meeting_a.participants[bob.id].audio_muted)
    assert any(
        isinstance(e, ParticipantUpdated) and e.participant.id == bob.id for e in alice_door.events
    )
    await alice.raise_hand(True)
    await until(lambda: meeting_b.participants[alice.id].hand_raised)

    # The host decides the active speaker; the satellite's own router does not.
    router_a = a.media.routers[-1]
    router_b = b.media.routers[-1]
    router_b.on_event(ActiveSpeaker(bob.id))
    assert b.meetings.media_of(meeting_b.id).active_speaker is None  # type: ignore[union-attr]
    router_a.on_event(ActiveSpeaker(bob.id))
    await until(lambda: b.meetings.media_of(meeting_b.id).active_speaker == bob.id)  # type: ignore[union-attr]

    # Bob leaves: B has nobody left, says bye and closes the trunk; A forgets Bob.
    await bob.leave()
    await until(lambda: names(meeting_a) == {alice.user_id})
    assert any(
        isinstance(e, ParticipantLeft) and e.participant_id == bob.id for e in alice_door.events
    )
    await until(lambda: not a.door.links and not b.door.links)
    assert all(t.closed_with is not None for t in a.trunk_media() + b.trunk_media())
    # A never told B about B's own people coming or going (only who speaks).
    told_b = [json.loads(m) for m in host_end.sent]
    roster = [m for m in told_b if m["type"] in ("joined", "updated", "left")]
    assert roster and not any(
        bob.id in (m.get("participant_id"), (m.get("participant") or {}).get("participant_id"))
        for m in roster
    )

    # The host's summary lists Bob too, with his server; only A's people are stored at A.
    stays = await a.storage.attendance.for_meeting(meeting_a.id)
    assert {s.user_id for s in stays} == {alice.user_id}
    summary = await a.meetings.end(meeting_a, alice.user_id)
    assert {p.user_id for p in summary.attendees} == {alice.user_id, bob.user_id}


async def test_the_host_remembers_who_was_behind_a_trunk_through_a_restart(
    sides: dict[str, Side],
) -> None:
    a, b = sides["a"], sides["b"]
    link = await linked(a, b)
    a.clock.advance(90)
    await link.bob.leave()
    await until(lambda: link.bob.id not in link.meeting_a.participants)
    # A restarts: a new run of its meetings on the same database.
    restarted = Meetings(a.storage.meetings, a.storage.attendance, a.media, a.clock)
    await restarted.load()
    meeting = restarted.live(link.meeting_a.id)
    assert meeting is not None
    a.clock.advance(30)
    summary = await restarted.end(meeting, "@alice:a.test")
    times = {p.user_id: p.total_ms for p in summary.attendees}
    # Alice's stay closed at the restart (nobody is in a restored meeting).
    assert times == {"@alice:a.test": 90_000, "@bob:b.test": 90_000}
    # Bob's time was kept for the summary only: nothing of his is left at A.
    assert await a.storage.attendance.remote_times(meeting.id) == []
    assert {s.user_id for s in await a.storage.attendance.for_meeting(meeting.id)} == {
        "@alice:a.test"
    }


async def test_the_trunk_goes_down_and_comes_back(sides: dict[str, Side]) -> None:
    a, b = sides["a"], sides["b"]
    link = await linked(a, b)
    meeting_a, meeting_b, alice, bob = link.meeting_a, link.meeting_b, link.alice, link.bob
    first = a.door.links[0].trunk_id

    # The connection is lost: A drops Bob, B offers a new trunk by itself.
    b.trunk_media()[0].listener.trunk_closed("connection lost")
    a.trunk_media()[0].listener.trunk_closed("connection lost")
    await until(lambda: bob.id not in meeting_a.participants or a.door.links[0].trunk_id != first)
    await until(
        lambda: (
            bool(a.door.links)
            and a.door.links[0].trunk_id != first
            and bob.id in meeting_a.participants
            and alice.id in meeting_b.participants
        )
    )
    assert [kind for kind, _ in b.sent] == [TRUNK_OFFER, TRUNK_OFFER]
    assert len(a.door.links) == len(b.door.links) == 1


async def test_three_agencies_form_a_star_around_the_host(sides: dict[str, Side]) -> None:
    a, b, c = sides["a"], sides["b"], sides["c"]
    meeting_a = await hosted(a, b, c)
    meeting_b, meeting_c = b.meetings.live(meeting_a.id), c.meetings.live(meeting_a.id)
    assert meeting_b is not None and meeting_c is not None
    await a.meetings.join(meeting_a, a.person("alice"), "Alice", RecordingAttendee())
    await b.meetings.join(meeting_b, b.person("bob"), "Bob", RecordingAttendee())
    await c.meetings.join(meeting_c, c.person("carol"), "Carol", RecordingAttendee())
    everyone = {"@alice:a.test", "@bob:b.test", "@carol:c.test"}
    await until(lambda: names(meeting_a) == names(meeting_b) == names(meeting_c) == everyone)
    # A star: two trunks at the host, one at each satellite, none between B and C.
    assert {link.peer for link in a.door.links} == {b.bot, c.bot}
    assert [link.peer for link in b.door.links] == [a.bot]
    assert [link.peer for link in c.door.links] == [a.bot]
    # Carol reaches B through A: behind B's one trunk, as a user of c.test.
    carol_at_b = next(p for p in meeting_b.participants.values() if p.user_id == "@carol:c.test")
    assert carol_at_b.via == b.door.links[0].trunk_id


async def test_an_end_on_either_side_ends_it_everywhere(sides: dict[str, Side]) -> None:
    a, b = sides["a"], sides["b"]
    link = await linked(a, b, bob_role=Role.MODERATOR)
    meeting_a, meeting_b, bob, bob_door = link.meeting_a, link.meeting_b, link.bob, link.bob_door

    # A moderator of B ends it: A is told over the trunk, ends it and posts the summary.
    assert await b.door.end_everywhere(meeting_b, bob.user_id)
    # The host confirmed over the trunk: B's side ended with it.
    assert not meeting_a.is_live and not meeting_b.is_live
    assert meeting_a.ended_by == bob.user_id
    await until(lambda: bool(a.peer_ends))
    assert [p.user_id for p in a.peer_ends[0].attendees] == ["@alice:a.test", bob.user_id]
    assert [d.code for d in bob_door.dismissals] == ["meeting_ended"]


async def test_the_host_ending_ends_the_satellite(sides: dict[str, Side]) -> None:
    a, b = sides["a"], sides["b"]
    link = await linked(a, b)
    meeting_a, meeting_b, bob_door = link.meeting_a, link.meeting_b, link.bob_door
    await a.meetings.end(meeting_a, "@alice:a.test")
    await until(lambda: not meeting_b.is_live and bool(bob_door.dismissals))
    assert [d.code for d in bob_door.dismissals] == ["meeting_ended"]
    assert a.peer_ends == []  # the host's own end goes through its own command


async def test_offers_from_untrusted_bots_are_ignored_and_allocate_nothing(
    sides: dict[str, Side], caplog: pytest.LogCaptureFixture
) -> None:
    a = sides["a"]
    meeting = await hosted(a)
    await a.meetings.join(meeting, a.person("alice"), "Alice", RecordingAttendee())
    offer = {
        "version": 1,
        "host": a.bot,
        "meeting_id": meeting.id,
        "trunk_id": "t1",
        "sdp": "offer t1",
    }
    await a.door.offer_received(ROOM, "@visio:evil.test", offer)
    await a.door.offer_received(ROOM, "@mallory:b.test", offer)  # right server, not the bot
    assert a.sent == [] and a.door.links == () and a.trunk_media() == []
    assert "not a trusted peer bridge" in caplog.text


async def test_bad_negotiation_is_refused_or_ignored(sides: dict[str, Side]) -> None:
    a = sides["a"]
    meeting = await hosted(a)
    await a.meetings.join(meeting, a.person("alice"), "Alice", RecordingAttendee())
    bot_b = sides["b"].bot
    good = {
        "version": 1,
        "host": a.bot,
        "meeting_id": meeting.id,
        "trunk_id": "t1",
        "sdp": "offer t1",
    }
    a.peers = {}  # answers go nowhere: this test reads them

    # Malformed: ignored, nothing sent.
    for content in (
        None,
        [],
        {**good, "version": 2},
        {**good, "trunk_id": "bad id!"},
        {**good, "sdp": 5},
        {**good, "sdp": "x" * 200_000},
    ):
        await a.door.offer_received(ROOM, bot_b, content)
    assert a.sent == [] and a.trunk_media() == []
    # For another bridge: ignored.
    await a.door.offer_received(ROOM, bot_b, {**good, "host": "@visio:c.test"})
    assert a.sent == []
    # Stale (a backlog replayed after an outage): ignored.
    await a.door.offer_received(ROOM, bot_b, good, age_ms=10 * 60_000)
    assert a.sent == []
    # An unknown meeting: refused in words.
    await a.door.offer_received(ROOM, bot_b, {**good, "trunk_id": "t2", "meeting_id": "nope"})
    assert a.sent[-1] == (
        TRUNK_ANSWER,
        {"version": 1, "trunk_id": "t2", "error": "No such meeting is live on this bridge."},
    )
    # Bad SDP: refused, and the trunk it opened is released.
    await a.door.offer_received(ROOM, bot_b, {**good, "trunk_id": "t3", "sdp": "garbage"})
    assert a.sent[-1][1]["error"] == "That is not a trunk offer."
    assert a.door.links == () and all(t.closed_with for t in a.trunk_media())
    # A good one is answered once; its replay is ignored.
    await a.door.offer_received(ROOM, bot_b, good)
    await a.door.offer_received(ROOM, bot_b, good)
    assert [c.get("sdp") for _, c in a.sent if c["trunk_id"] == "t1"] == ["answer t1"]
    assert len(a.door.links) == 1
    # The meeting went on throughout.
    assert names(meeting) == {"@alice:a.test"} and meeting.is_live


async def test_bad_state_messages_are_ignored_and_disturb_nothing(
    sides: dict[str, Side], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = sides["a"], sides["b"]
    link = await linked(a, b)
    meeting_a, alice, bob = link.meeting_a, link.alice, link.bob
    host_end = a.door.links[0]

    def joined(**changes: Any) -> str:
        participant = {
            "participant_id": "pmallory",
            "user_id": "@mallory:b.test",
            "display_name": "M",
            "avatar_url": None,
            "role": "participant",
            "audio_muted": False,
            "video_muted": False,
            "hand_raised": False,
            "encrypted": False,
        }
        return json.dumps({"type": "joined", "participant": {**participant, **changes}})

    for message in (
        "not json",
        "[]",
        json.dumps({"type": "teleport"}),
        joined(user_id="@alice:a.test", participant_id="pfake"),  # a user of A, claimed by B
        joined(participant_id=alice.id),  # a taken participant id
        joined(role="admin"),
        joined(display_name="x" * 10_000),
        joined(rtc_identity="x" * 1000),
        joined(rtc_identity=["@mallory:b.test:D"]),
        joined(rtc_identity="two words"),
        json.dumps({"type": "speaker", "participant_id": bob.id}),  # the host decides
        json.dumps({"type": "left", "participant_id": alice.id}),  # not behind the trunk
        json.dumps({"type": "end", "ended_by": "@alice:a.test"}),  # not a user of B
    ):
        host_end.trunk_state(message)
    await asyncio.sleep(0.2)
    assert names(meeting_a) == {alice.user_id, bob.user_id} and meeting_a.is_live
    assert alice.present and meeting_a.participants[alice.id] is alice
    assert "ignoring a state message" in caplog.text
    # A valid message after all of that is still applied.
    host_end.trunk_state(joined())
    await until(lambda: "@mallory:b.test" in names(meeting_a))
    # A trunk brings at most MAX_BEHIND people.
    monkeypatch.setattr(trunks_module, "MAX_BEHIND", 2)
    host_end.trunk_state(joined(participant_id="pmore", user_id="@more:b.test"))
    await asyncio.sleep(0.1)
    assert "@more:b.test" not in names(meeting_a)
    assert "people behind one trunk is the most" in caplog.text


async def test_a_stop_while_the_last_person_leaves_closes_the_trunk_once(
    sides: dict[str, Side],
) -> None:
    a, b = sides["a"], sides["b"]
    link = await linked(a, b)
    meeting_a, bob = link.meeting_a, link.bob
    # B stops (its door closes its trunks) while its last person leaves: both close the
    # same trunk at once, and neither waits for the other forever.
    async with asyncio.timeout(5):
        await asyncio.gather(b.door.close(), bob.leave())
    assert b.door.links == () and all(t.closed_with for t in b.trunk_media())
    await until(lambda: bob.id not in meeting_a.participants and not a.door.links)


async def test_recording_anywhere_is_told_on_every_side(sides: dict[str, Side]) -> None:
    a, b, c = sides["a"], sides["b"], sides["c"]
    meeting_a = await hosted(a, b, c)
    meeting_b, meeting_c = b.meetings.live(meeting_a.id), c.meetings.live(meeting_a.id)
    assert meeting_b is not None and meeting_c is not None
    await a.meetings.join(meeting_a, a.person("alice"), "Alice", RecordingAttendee())
    bob_door, carol_door = RecordingAttendee(), RecordingAttendee()
    await b.meetings.join(meeting_b, b.person("bob"), "Bob", bob_door)
    await c.meetings.join(meeting_c, c.person("carol"), "Carol", carol_door)
    everyone = {"@alice:a.test", "@bob:b.test", "@carol:c.test"}
    await until(lambda: names(meeting_a) == names(meeting_b) == names(meeting_c) == everyone)

    # B records: the host learns it, and tells C through its other trunk.
    await b.meetings.set_capture(meeting_b, recording=True)
    await until(lambda: meeting_a.recorded and meeting_c.recorded)
    assert not meeting_a.recording and not meeting_c.recording  # neither records itself
    assert [e.recording for e in carol_door.events if isinstance(e, CaptureChanged)] == [True]
    # The host transcribes: both satellites are told; B's own recording is unchanged.
    await a.meetings.set_capture(meeting_a, transcribing=True)
    await until(lambda: meeting_b.transcribed and meeting_c.transcribed)
    assert meeting_b.recording and meeting_c.recorded
    # B stops: only the host's transcription is left anywhere.
    await b.meetings.set_capture(meeting_b, recording=False)
    await until(lambda: not meeting_c.recorded and not meeting_a.recorded)
    assert meeting_c.transcribed and meeting_b.transcribed

    # A bad capture message is ignored; the state stays as it was.
    host_end = next(link for link in a.door.links if link.peer == b.bot)
    host_end.trunk_state(json.dumps({"type": "capture", "recording": "yes"}))
    await asyncio.sleep(0.1)
    assert not meeting_a.recorded


async def test_captions_cross_each_trunk_once_and_never_back(sides: dict[str, Side]) -> None:
    a, b, c = sides["a"], sides["b"], sides["c"]
    meeting_a = await hosted(a, b, c)
    meeting_b, meeting_c = b.meetings.live(meeting_a.id), c.meetings.live(meeting_a.id)
    assert meeting_b is not None and meeting_c is not None
    alice_door, bob_door, carol_door = (
        RecordingAttendee(),
        RecordingAttendee(),
        RecordingAttendee(),
    )
    alice = await a.meetings.join(meeting_a, a.person("alice"), "Alice", alice_door)
    bob = await b.meetings.join(meeting_b, b.person("bob"), "Bob", bob_door)
    await c.meetings.join(meeting_c, c.person("carol"), "Carol", carol_door)
    everyone = {"@alice:a.test", "@bob:b.test", "@carol:c.test"}
    await until(lambda: names(meeting_a) == names(meeting_b) == names(meeting_c) == everyone)

    def captions(door: RecordingAttendee) -> list[tuple[str, str]]:
        return [(e.participant_id, e.text) for e in door.events if isinstance(e, Caption)]

    a.meetings.caption(meeting_a, alice.id, "Bonjour à tous")  # the host transcribes
    b.meetings.caption(meeting_b, bob.id, "Hello from B")  # and so does B
    await until(lambda: len(captions(carol_door)) == 2)
    await asyncio.sleep(0.1)
    assert sorted(captions(carol_door)) == sorted(
        [(alice.id, "Bonjour à tous"), (bob.id, "Hello from B")]
    )
    assert len(captions(alice_door)) == 2
    assert len(captions(bob_door)) == 2  # its own once, not echoed back by the host

    host_end = next(link for link in a.door.links if link.peer == b.bot)
    for bad in (
        {"type": "caption", "participant_id": "pnobody", "text": "ghost"},
        {"type": "caption", "participant_id": alice.id, "text": "x" * 5000},
        {"type": "caption", "participant_id": alice.id},
    ):
        host_end.trunk_state(json.dumps(bad))
    await asyncio.sleep(0.1)
    assert len(captions(alice_door)) == 2
