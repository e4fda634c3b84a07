"""The commands themselves: help, start, end, status, invite."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from html import escape
from typing import Protocol

from ...capture.recordings import CaptureError
from ...config import server_of
from ...meeting.meeting import Meeting, MeetingSummary, format_duration
from ...meeting.meetings import MeetingError
from ...meeting.roles import Level, Role
from ..rooms import MatrixActionError
from . import Command, CommandEvent, CommandUsageError, code, html_list

log = logging.getLogger("visio.matrix.commands")

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
    name = await evt.ctx.rooms.room_name(evt.room_id)
    return f"{name} meeting" if name else "Meeting"


async def cmd_start(evt: CommandEvent) -> None:
    title = evt.args or await _default_title(evt)
    if len(title) > MAX_TITLE_LENGTH:
        raise CommandUsageError(f"The title is too long (at most {MAX_TITLE_LENGTH} characters).")
    meeting, created = await evt.ctx.meetings.start(evt.room_id, title, evt.sender)
    room = evt.ctx.meeting_room
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
            f"{evt.ctx.bot_mxid} send state events "
            f"({', '.join(missing)}), for example by making it a moderator."
        )
        text += "\n" + advice
        html += "<br>" + escape(advice)
    notice = await evt.reply(text, html)
    # The meeting's notice: its thread gets the transcript, if the meeting is transcribed.
    await evt.ctx.meetings.set_notice(meeting, notice)


async def cmd_end(evt: CommandEvent) -> None:
    meeting = evt.ctx.meetings.live_in_room(evt.room_id)
    if meeting is None:
        await evt.reply("No meeting is live in this room.")
        return
    if not meeting.may_end(evt.sender, evt.role):
        await evt.reply(
            "Only room moderators, bridge moderators and whoever started the meeting can end it."
        )
        return
    if meeting.hosted_elsewhere:
        await _end_hosted_elsewhere(evt, meeting)
        return
    try:
        summary = await evt.ctx.meetings.end(meeting, evt.sender)
    except MeetingError as e:
        await evt.reply(str(e))
        return
    await evt.ctx.meeting_room.retract(meeting)
    await evt.reply(*summary_text(summary))


async def _end_hosted_elsewhere(evt: CommandEvent, meeting: Meeting) -> None:
    """Another agency's bridge hosts the meeting: it ends there (and posts the summary)
    once told over the trunk, and here at once."""
    end_elsewhere = evt.ctx.end_elsewhere
    told = end_elsewhere is not None and await end_elsewhere(meeting, evt.sender)
    if meeting.is_live:
        try:
            await evt.ctx.meetings.end(meeting, evt.sender)
        except MeetingError:
            pass  # the host's word that it ended came in meanwhile
    if not told:
        await evt.reply(
            f"The meeting ended for this agency's people. {meeting.host}, whose bridge hosts "
            "it, could not be told: a moderator on that side can end it there."
        )


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
    meeting = evt.ctx.meetings.live_in_room(evt.room_id)
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
    duration = format_duration(meeting.duration_ms(evt.ctx.clock.now_ms()))
    url = evt.ctx.meeting_room.join_url(meeting)
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
    rooms = evt.ctx.rooms
    invite_power, bot_power = await rooms.invite_levels(evt.room_id)
    if evt.room_power < invite_power:
        await evt.reply("You may not invite people to this room.")
        return
    if bot_power < invite_power:
        await evt.reply(
            f"I may not invite people to this room: a room admin must give "
            f"{evt.ctx.bot_mxid} the power to invite."
        )
        return
    if await rooms.is_joined(evt.room_id, target):
        await evt.reply(f"{target} is already in this room.")
        return
    try:
        await rooms.invite(evt.room_id, target)
    except MatrixActionError as e:
        await evt.reply(f"Could not invite {target}: {e}")
        return
    await evt.reply(f"Invited {target}.")


async def cmd_link(evt: CommandEvent) -> None:
    meeting = await _live_meeting(evt)
    if meeting is None:
        return
    ctx = evt.ctx
    now_s = ctx.clock.now_ms() // 1000
    name = await ctx.rooms.display_name(evt.room_id, evt.sender)
    token = await ctx.links.issue(meeting.id, evt.sender, now_s, name)
    url = f"{ctx.meeting_room.join_url(meeting)}#token={token}"
    until = datetime.fromtimestamp(now_s + ctx.links.lifetime_s, UTC)
    text = (
        f'Your personal link to "{meeting.title}", valid until {until:%Y-%m-%d %H:%M} UTC. '
        f"It signs you in as {evt.sender}: do not share it. {url}"
    )
    html = (
        f'<a href="{escape(url)}">Your personal link to {escape(meeting.title)}</a>, valid '
        f"until {until:%Y-%m-%d %H:%M} UTC. It signs you in as {escape(evt.sender)}: "
        "do not share it."
    )
    direct = await ctx.rooms.direct_room(evt.sender)
    await ctx.rooms.send_notice(direct, text, html)
    if direct != evt.room_id:
        await evt.reply("I sent you a personal link in a direct message.")


class CaptureService(Protocol):
    """Recordings or transcriptions (:mod:`bridge.capture`), as their commands use them."""

    async def start(self, meeting: Meeting, by: str) -> None: ...

    async def stop(self, meeting: Meeting, by: str) -> None: ...


async def _capture_command(
    evt: CommandEvent,
    service: CaptureService | None,
    words: tuple[str, str],
    refusal: str,
    unavailable: str,
) -> None:
    """``record start|stop`` and ``transcribe on|off``: for moderators of a live
    meeting; what the service refuses is said in its words."""
    action = evt.args.strip().lower()
    if action not in words:
        raise CommandUsageError(f"Say {words[0]} or {words[1]}.")
    meeting = await _live_meeting(evt)
    if meeting is None:
        return
    if evt.role != Role.MODERATOR:
        await evt.reply(refusal)
        return
    if service is None:
        await evt.reply(unavailable)
        return
    try:
        if action == words[0]:
            await service.start(meeting, evt.sender)
        else:
            await service.stop(meeting, evt.sender)
    except (CaptureError, MeetingError) as e:
        await evt.reply(str(e))


async def cmd_transcribe(evt: CommandEvent) -> None:
    await _capture_command(
        evt,
        evt.ctx.transcriptions,
        ("on", "off"),
        "Only moderators can turn transcription on or off.",
        "This bridge does not transcribe meetings.",
    )


async def cmd_record(evt: CommandEvent) -> None:
    await _capture_command(
        evt,
        evt.ctx.recordings,
        ("start", "stop"),
        "Only moderators can start or stop a recording.",
        "This bridge does not record meetings.",
    )


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
        Command(
            "record start|stop",
            "record the meeting on this agency's servers (moderators; everyone is told)",
            Level.USER,
            cmd_record,
        ),
        Command(
            "transcribe on|off",
            "live captions and a transcript, made on this agency's servers (moderators; "
            "everyone is told)",
            Level.USER,
            cmd_transcribe,
        ),
    )
}


async def run_command(evt: CommandEvent) -> None:
    """Check who may run the command, run it, and answer bad usage in words."""
    if evt.level < Level.USER:
        if evt.ctx.refusals.allow(evt.sender, evt.ctx.clock.monotonic()):
            await evt.reply(
                "Sorry, you may not use Visio Bridge. Ask your administrator for access."
            )
        return
    command = COMMANDS.get(evt.name)
    if command is None:
        await evt.reply(f"Unknown command {evt.name!r}. Type {evt.example('help')} for the list.")
        return
    if evt.level < command.min_level:
        await evt.reply(f"Sorry, you may not use {evt.name}.")
        return
    log.info("%s runs %s in %s", evt.sender, evt.name, evt.room_id)
    try:
        await command.handler(evt)
    except CommandUsageError as e:
        await evt.reply(f"{e} Usage: {evt.example(command.usage)} (see {evt.example('help')}).")


__all__ = ["COMMANDS", "Role", "run_command"]
