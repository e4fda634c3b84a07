"""The commands themselves: help, start, end, status, invite."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import escape

from mautrix.errors import MatrixRequestError
from mautrix.types import EventType, RoomID, UserID

from ...config import server_of
from ...meeting.meeting import Meeting, MeetingSummary, format_duration
from ...meeting.meetings import MeetingError
from ...meeting.roles import Level, Role
from . import Command, CommandEvent, CommandUsageError, code, html_list

MAX_TITLE_LENGTH = 200
_USER_ID = re.compile(r"^@[a-z0-9._=/+-]+:[A-Za-z0-9.:\[\]-]+$")


async def cmd_help(evt: CommandEvent) -> None:
    usable = [command for command in COMMANDS.values() if evt.level >= command.min_level]
    lines = [f"{evt.example(command.usage)} — {command.summary}" for command in usable]
    header = "Commands you can use here:"
    await evt.reply(
        "\n".join([header, *lines]),
        escape(header)
        + html_list(
            [
                f"{code(evt.example(command.usage))} — {escape(command.summary)}"
                for command in usable
            ]
        ),
    )


async def _default_title(evt: CommandEvent) -> str:
    try:
        content = await evt.bridge.bot.get_state_event(evt.room_id, EventType.ROOM_NAME)
        name = getattr(content, "name", None)
    except MatrixRequestError:
        name = None
    return f"{name} meeting" if name else "Meeting"


async def cmd_start(evt: CommandEvent) -> None:
    title = evt.args or await _default_title(evt)
    if len(title) > MAX_TITLE_LENGTH:
        raise CommandUsageError(f"The title is too long (at most {MAX_TITLE_LENGTH} characters).")
    meeting, created = await evt.bridge.meetings.start(evt.room_id, title, evt.sender)
    room = evt.bridge.matrix.meeting_room
    url = room.join_url(meeting)
    if not created:
        await evt.reply(
            f'A meeting is already live here: "{meeting.title}". Join: {url}',
            f"A meeting is already live here: <b>{escape(meeting.title)}</b>. "
            f'<a href="{escape(url)}">Join the meeting</a>',
        )
        return
    missing = await room.publish(meeting)
    text = f'Meeting "{meeting.title}" started. Join: {url}'
    html = (
        f"Meeting <b>{escape(meeting.title)}</b> started. "
        f'<a href="{escape(url)}">Join the meeting</a>'
    )
    if missing:
        advice = (
            f"To show the meeting as a widget in this room, a room admin must let "
            f"{evt.bridge.config.bot_mxid} send state events "
            f"({', '.join(str(t) for t in missing)}), for example by making it a moderator."
        )
        text += "\n" + advice
        html += "<br>" + escape(advice)
    await evt.reply(text, html)


async def cmd_end(evt: CommandEvent) -> None:
    meeting = evt.bridge.meetings.live_in_room(evt.room_id)
    if meeting is None:
        await evt.reply("No meeting is live in this room.")
        return
    if not meeting.may_end(evt.sender, evt.role):
        await evt.reply(
            "Only room moderators, bridge moderators and whoever started the meeting can end it."
        )
        return
    try:
        summary = await evt.bridge.meetings.end(meeting, evt.sender)
    except MeetingError as e:
        await evt.reply(str(e))
        return
    await evt.bridge.matrix.meeting_room.retract(meeting)
    await evt.reply(*summary_text(summary))


def summary_text(summary: MeetingSummary) -> tuple[str, str]:
    """The end-of-meeting notice, as plain text and HTML."""
    head = f'Meeting "{summary.title}" ended after {format_duration(summary.duration_ms)}.'
    head_html = (
        f"Meeting <b>{escape(summary.title)}</b> ended after "
        f"{format_duration(summary.duration_ms)}."
    )
    if not summary.attendees:
        return f"{head} Nobody joined.", f"{head_html} Nobody joined."
    people = [
        f"{person.display_name} ({person.user_id}): {format_duration(person.total_ms)}"
        for person in summary.attendees
    ]
    return (
        "\n".join([head, "Attended:", *people]),
        head_html + " Attended:" + html_list([escape(p) for p in people]),
    )


async def _live_meeting(evt: CommandEvent) -> Meeting | None:
    """The room's live meeting, or None after telling the sender how to start one."""
    meeting = evt.bridge.meetings.live_in_room(evt.room_id)
    if meeting is None:
        await evt.reply(
            f"No meeting is live in this room. Start one with {evt.example('start [title]')}."
        )
    return meeting


async def cmd_status(evt: CommandEvent) -> None:
    meeting = await _live_meeting(evt)
    if meeting is None:
        return
    await evt.reply(*status_text(evt, meeting))


def status_text(evt: CommandEvent, meeting: Meeting) -> tuple[str, str]:
    duration = format_duration(meeting.duration_ms(evt.bridge.clock.now_ms()))
    url = evt.bridge.matrix.meeting_room.join_url(meeting)
    names = [p.display_name for p in meeting.participants.values()]
    who = f"{len(names)} in the meeting now" + (f": {', '.join(names)}" if names else "")
    text = (
        f'Meeting "{meeting.title}" is live, for {duration}, started by {meeting.started_by}. '
        f"{who}. Join: {url}"
    )
    html = (
        f"Meeting <b>{escape(meeting.title)}</b> is live, for {duration}, started by "
        f"{escape(meeting.started_by)}. {escape(who)}. "
        f'<a href="{escape(url)}">Join the meeting</a>'
    )
    return text, html


async def cmd_invite(evt: CommandEvent) -> None:
    target = evt.args.strip()
    if not target or " " in target:
        raise CommandUsageError("Give one user id, like @alice:example.org.")
    if len(target) > 255 or not _USER_ID.match(target) or server_of(target) is None:
        raise CommandUsageError(f"{target!r} is not a Matrix user id (like @alice:example.org).")
    bot = evt.bridge.bot
    levels = await bot.get_power_levels(evt.room_id)
    if evt.room_power < levels.invite:
        await evt.reply("You may not invite people to this room.")
        return
    create = await evt.bridge.state_store.get_create(evt.room_id)
    if levels.get_user_level(bot.mxid, create) < levels.invite:
        await evt.reply(
            f"I may not invite people to this room: a room admin must give "
            f"{evt.bridge.config.bot_mxid} the power to invite."
        )
        return
    if await evt.bridge.state_store.is_joined(evt.room_id, UserID(target)):
        await evt.reply(f"{target} is already in this room.")
        return
    try:
        await bot.invite_user(RoomID(evt.room_id), UserID(target))
    except MatrixRequestError as e:
        await evt.reply(f"Could not invite {target}: {e.message}")
        return
    await evt.reply(f"Invited {target}.")


async def cmd_link(evt: CommandEvent) -> None:
    meeting = await _live_meeting(evt)
    if meeting is None:
        return
    bridge = evt.bridge
    now_s = bridge.clock.now_ms() // 1000
    member = await bridge.state_store.get_member(evt.room_id, evt.sender)
    name = member.displayname if member is not None else None
    token = bridge.web.links.make(meeting.id, evt.sender, now_s, name)
    url = f"{bridge.matrix.meeting_room.join_url(meeting)}#token={token}"
    until = datetime.fromtimestamp(now_s + bridge.web.links.lifetime_s, UTC)
    text = (
        f'Your personal link to "{meeting.title}", valid until {until:%Y-%m-%d %H:%M} UTC. '
        f"It signs you in as {evt.sender}: do not share it. {url}"
    )
    html = (
        f'<a href="{escape(url)}">Your personal link to {escape(meeting.title)}</a>, valid '
        f"until {until:%Y-%m-%d %H:%M} UTC. It signs you in as {escape(evt.sender)}: "
        "do not share it."
    )
    direct = await bridge.matrix.direct_room(evt.sender)
    await bridge.matrix.send_notice(direct, text, html)
    if direct != evt.room_id:
        await evt.reply("I sent you a personal link in a direct message.")


COMMANDS: dict[str, Command] = {
    command.name: command
    for command in (
        Command("help", "the commands you can use", Level.USER, cmd_help),
        Command("start [title]", "start this room's meeting", Level.USER, cmd_start),
        Command(
            "end",
            "end the meeting (moderators, and whoever started it)",
            Level.USER,
            cmd_end,
        ),
        Command("status", "the meeting's state and who is in it", Level.USER, cmd_status),
        Command("invite @user:server", "invite someone to this room", Level.USER, cmd_invite),
        Command(
            "link",
            "a personal link to the meeting, sent to you in a direct message",
            Level.USER,
            cmd_link,
        ),
    )
}

__all__ = ["COMMANDS", "Role"]
