"""Commands, fast: the real command code and meetings, with a Matrix side that records
what it would send (the real-Synapse tests are in tests/integration)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bridge.auth.links import LinkError, LinkSigner, PersonalLinks
from bridge.capture.recordings import Recordings
from bridge.clock import ManualClock
from bridge.db import Storage
from bridge.matrix.commands import CommandContext, CommandEvent
from bridge.matrix.commands.handlers import run_command
from bridge.matrix.rooms import MatrixActionError
from bridge.meeting.identity import Identity
from bridge.meeting.meeting import Meeting
from bridge.meeting.meetings import Meetings
from bridge.meeting.roles import Level, Role
from tests.meeting.fakes import FakeMedia, RecordingAttendee

ROOM = "!room:agency.test"
BOT = "@visio:agency.test"


@dataclass
class Notice:
    room_id: str
    text: str
    html: str | None
    reply_to: str | None


@dataclass
class RecordingRooms:
    """The Matrix side of commands, recording instead of sending."""

    notices: list[Notice] = field(default_factory=list)
    invited: list[tuple[str, str]] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    joined: set[tuple[str, str]] = field(default_factory=set)
    invite_power: int = 0
    bot_power: int = 100
    refuse_invites: bool = False

    async def send_notice(
        self, room_id: str, text: str, html: str | None = None, reply_to: str | None = None
    ) -> str:
        self.notices.append(Notice(room_id, text, html, reply_to))
        return f"$notice{len(self.notices)}"

    async def room_name(self, room_id: str) -> str | None:
        return self.names.get(room_id)

    async def display_name(self, room_id: str, user_id: str) -> str | None:
        return "Alice Martin" if user_id.startswith("@alice") else None

    async def invite_levels(self, room_id: str) -> tuple[int, int]:
        return self.invite_power, self.bot_power

    async def is_joined(self, room_id: str, user_id: str) -> bool:
        return (room_id, user_id) in self.joined

    async def invite(self, room_id: str, user_id: str) -> None:
        if self.refuse_invites:
            raise MatrixActionError("The user is banned.")
        self.invited.append((room_id, user_id))

    async def direct_room(self, user_id: str) -> str:
        return f"!dm-{user_id}"


@dataclass
class RecordingPresence:
    """How a meeting would show in its room."""

    published: list[str] = field(default_factory=list)
    retracted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def join_url(self, meeting: Meeting) -> str:
        return f"https://visio.agency.test/meet/{meeting.id}"

    async def publish(self, meeting: Meeting) -> list[str]:
        self.published.append(meeting.id)
        return list(self.missing)

    async def retract(self, meeting: Meeting) -> None:
        self.retracted.append(meeting.id)


class Bot:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.clock = ManualClock()
        self.rooms = RecordingRooms()
        self.presence = RecordingPresence()
        self.links = PersonalLinks(LinkSigner("a-secret-for-tests", 3600), storage.personal_links)
        self.meetings = Meetings(storage.meetings, storage.attendance, FakeMedia(), self.clock)
        self.ctx = CommandContext(
            meetings=self.meetings,
            rooms=self.rooms,
            meeting_room=self.presence,
            links=self.links,
            clock=self.clock,
            prefix="!visio",
            bot_mxid=BOT,
        )

    async def say(
        self,
        text: str,
        sender: str = "@alice:agency.test",
        *,
        level: Level = Level.USER,
        role: Role | None = Role.PARTICIPANT,
        power: int = 0,
        direct: bool = False,
        room_id: str = ROOM,
    ) -> list[Notice]:
        name, _, args = text.partition(" ")
        before = len(self.rooms.notices)
        await run_command(
            CommandEvent(
                self.ctx, room_id, sender, "$event", name, args, level, role, power, direct
            )
        )
        return self.rooms.notices[before:]


@pytest.fixture
def bot(storage: Storage) -> Bot:
    return Bot(storage)


async def test_help_lists_commands_and_replies_to_the_command(bot: Bot) -> None:
    [notice] = await bot.say("help")
    assert notice.reply_to == "$event" and notice.room_id == ROOM
    for usage in ("!visio start [title]", "!visio end", "!visio link"):
        assert usage in notice.text
    [direct] = await bot.say("help", direct=True)
    assert "\nstart [title]" in direct.text and "!visio start" not in direct.text


async def test_start_publishes_once_and_names_the_meeting_after_the_room(bot: Bot) -> None:
    bot.rooms.names[ROOM] = "Budget"
    [started] = await bot.say("start")
    meeting = bot.meetings.live_in_room(ROOM)
    assert meeting is not None and meeting.title == "Budget meeting"
    assert bot.presence.published == [meeting.id]
    assert f"/meet/{meeting.id}" in started.text
    [again] = await bot.say("start Other", sender="@bob:agency.test")
    assert "already live" in again.text and bot.presence.published == [meeting.id]
    [too_long] = await bot.say("start " + "x" * 201)
    assert "too long" in too_long.text and "Usage: !visio start [title]" in too_long.text


async def test_start_says_which_power_the_bot_lacks(bot: Bot) -> None:
    bot.presence.missing = ["im.vector.modular.widgets"]
    [notice] = await bot.say("start Weekly")
    assert "im.vector.modular.widgets" in notice.text and BOT in notice.text


async def test_status_counts_people_from_any_door(bot: Bot) -> None:
    [none] = await bot.say("status")
    assert "No meeting is live" in none.text
    await bot.say("start Weekly")
    meeting = bot.meetings.live_in_room(ROOM)
    assert meeting is not None
    who = Identity("@carol:agency.test", "agency.test", "Carol", None, Role.PARTICIPANT)
    await bot.meetings.join(meeting, who, "Carol", RecordingAttendee())
    bot.clock.advance(125)
    [status] = await bot.say("status")
    assert "1 in the meeting now: Carol" in status.text and "for 2 min" in status.text


async def test_end_is_for_moderators_and_the_starter(bot: Bot) -> None:
    await bot.say("start Weekly")
    [refused] = await bot.say("end", sender="@bob:agency.test")
    assert "Only room moderators" in refused.text
    assert bot.meetings.live_in_room(ROOM) is not None
    [ended] = await bot.say("end", sender="@mod:agency.test", role=Role.MODERATOR)
    assert "ended after" in ended.text and "Nobody joined" in ended.text
    assert bot.meetings.live_in_room(ROOM) is None and len(bot.presence.retracted) == 1
    [nothing] = await bot.say("end")
    assert "No meeting is live" in nothing.text


async def test_invite_checks_both_powers_and_reports_refusals(bot: Bot) -> None:
    [usage] = await bot.say("invite not-a-user")
    assert "is not a Matrix user id" in usage.text
    bot.rooms.invite_power = 50
    [weak] = await bot.say("invite @dan:agency.test", power=0)
    assert "You may not invite" in weak.text
    bot.rooms.bot_power = 0
    [bot_weak] = await bot.say("invite @dan:agency.test", power=50)
    assert "I may not invite" in bot_weak.text
    bot.rooms.bot_power = 100
    bot.rooms.joined.add((ROOM, "@erin:agency.test"))
    [already] = await bot.say("invite @erin:agency.test", power=50)
    assert "already in this room" in already.text
    [done] = await bot.say("invite @dan:agency.test", power=50)
    assert done.text == "Invited @dan:agency.test." and bot.rooms.invited == [
        (ROOM, "@dan:agency.test")
    ]
    bot.rooms.refuse_invites = True
    [failed] = await bot.say("invite @frank:agency.test", power=50)
    assert failed.text == "Could not invite @frank:agency.test: The user is banned."


async def test_link_goes_to_a_direct_room_and_signs_the_sender_in(bot: Bot) -> None:
    await bot.say("start Weekly")
    meeting = bot.meetings.live_in_room(ROOM)
    assert meeting is not None
    [link, pointer] = await bot.say("link")
    assert pointer.room_id == ROOM and "direct message" in pointer.text
    assert link.room_id == "!dm-@alice:agency.test" and link.reply_to is None
    token = link.text.split("#token=", 1)[1]
    now_s = bot.clock.now_ms() // 1000
    assert (await bot.links.check(token, meeting.id, now_s)).user_id == "@alice:agency.test"
    # The newer link revokes the older one (a link shared by mistake is undone).
    [again, _] = await bot.say("link")
    newer = again.text.split("#token=", 1)[1]
    assert (await bot.links.check(newer, meeting.id, now_s)).user_id == "@alice:agency.test"
    with pytest.raises(LinkError, match="replaced by a newer one"):
        await bot.links.check(token, meeting.id, now_s)
    # Bob's link is his own: alice's next link revokes nothing of his.
    [bobs, _] = await bot.say("link", sender="@bob:agency.test")
    await bot.say("link")
    bob_token = bobs.text.split("#token=", 1)[1]
    assert (await bot.links.check(bob_token, meeting.id, now_s)).user_id == "@bob:agency.test"
    # Asked in a room without a meeting, the answer says so and sends no link.
    [none] = await bot.say("link", room_id="!dm-@alice:agency.test", direct=True)
    assert "No meeting is live" in none.text and "#token=" not in none.text


async def test_refusals_and_unknown_commands_are_answered_in_words(bot: Bot) -> None:
    [refused] = await bot.say("start", sender="@eve:elsewhere.test", level=Level.NONE, role=None)
    assert "may not use Visio Bridge" in refused.text
    assert bot.meetings.live_in_room(ROOM) is None
    [unknown] = await bot.say("dance")
    assert "Unknown command 'dance'" in unknown.text and "!visio help" in unknown.text


async def test_a_refused_user_is_told_once_per_interval(bot: Bot) -> None:
    eve = {"sender": "@eve:elsewhere.test", "level": Level.NONE, "role": None}
    first = await bot.say("help", **eve)  # type: ignore[arg-type]
    assert len(first) == 1
    for _ in range(20):
        assert await bot.say("start", **eve) == []  # type: ignore[arg-type]
    # Another refused user is still told.
    assert len(await bot.say("help", sender="@mallory:elsewhere.test", level=Level.NONE)) == 1
    bot.clock.advance(601)
    assert len(await bot.say("help", **eve)) == 1  # type: ignore[arg-type]


async def test_record_is_for_moderators_and_says_what_it_cannot_do(
    bot: Bot, tmp_path: Path
) -> None:
    from tests.capture.test_recordings import FakeRecorder, FakeRoom

    room = FakeRoom()
    bot.ctx.recordings = Recordings(
        bot.meetings,
        bot.storage.capture_files,
        room,
        bot.clock,
        enabled=True,
        path=tmp_path,
        recorder=FakeRecorder,
    )
    [usage] = await bot.say("record now", role=Role.MODERATOR)
    assert "Say start or stop" in usage.text and "record start|stop" in usage.text
    [none] = await bot.say("record start", role=Role.MODERATOR)
    assert "No meeting is live" in none.text
    await bot.say("start Weekly")
    meeting = bot.meetings.live_in_room(ROOM)
    assert meeting is not None
    [refused] = await bot.say("record start")  # the starter, but no moderator
    assert "Only moderators" in refused.text and not meeting.recording
    assert await bot.say("record start", role=Role.MODERATOR) == []  # the room is told
    assert meeting.recording and "Recording started" in room.notices[-1][1]
    [again] = await bot.say("record start", sender="@mod:agency.test", role=Role.MODERATOR)
    assert "already being recorded" in again.text
    assert await bot.say("record stop", role=Role.MODERATOR) == []
    assert not meeting.recording
    [help_text] = await bot.say("help")
    assert "!visio record start|stop" in help_text.text
    bot.ctx.recordings = None
    [unavailable] = await bot.say("record start", role=Role.MODERATOR)
    assert "does not record" in unavailable.text
