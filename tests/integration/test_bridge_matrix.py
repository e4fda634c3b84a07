"""The bridge against a real Synapse: invites, commands, room state, replays, restarts."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.harness.synapse import member_event
from tests.integration.conftest import Stack, eventually

JSON = dict[str, Any]


def body(event: JSON) -> str:
    return str(event["content"].get("body", ""))


def from_bot(stack: Stack, text: str) -> Any:
    return lambda e: e.get("sender") == stack.bot and text in body(e)


async def command(user: Any, room_id: str, text: str, stack: Stack, expect: str) -> JSON:
    await user.send_text(room_id, text)
    return await user.wait_for_message(room_id, from_bot(stack, expect))


async def test_meeting_commands_and_room_state(stack: Stack) -> None:
    alice = await stack.user("alice")
    bob = await stack.user("bob")
    room_id = await stack.room_with_bot(alice)
    await alice.invite(room_id, bob.user_id)
    await bob.join(room_id)  # three members: not a direct chat, the prefix is needed
    await bob.send_text(room_id, "status")

    help_reply = await command(alice, room_id, "!visio help", stack, "Commands you can use")
    for name in ("help", "start", "end", "status", "invite"):
        assert f"!visio {name}" in body(help_reply)
    assert help_reply["content"]["msgtype"] == "m.notice"

    started = await command(alice, room_id, "!visio start Budget review", stack, "started")
    assert 'Meeting "Budget review" started' in body(started)
    state = await alice.get_state(room_id, "io.visiobridge.meeting")
    assert state is not None
    assert state["title"] == "Budget review" and state["state"] == "live"
    assert state["host"] == stack.bot and state["started_by"] == alice.user_id
    meeting_id = state["meeting_id"]
    assert state["join_url"] == f"{stack.config['web.public_url']}/meet/{meeting_id}"
    assert state["join_url"] in body(started)

    widget_id = f"visio_{meeting_id}"
    widget = await alice.get_state(room_id, "im.vector.modular.widgets", widget_id)
    assert widget is not None and widget["name"] == "Budget review"
    assert widget["url"].startswith(state["join_url"] + "?")
    assert "$matrix_user_id" in widget["url"]
    layout = await alice.get_state(room_id, "io.element.widgets.layout")
    assert layout is not None and layout["widgets"][widget_id]["container"] == "top"

    # The page behind the link is the meeting client; it shows what /info says.
    async with aiohttp.ClientSession() as http:
        async with http.get(state["join_url"]) as response:
            assert response.status == 200
            assert response.content_type == "text/html"
        async with http.get(state["join_url"] + "/info") as response:
            info = await response.json()
            assert info == {
                "meeting_id": meeting_id,
                "title": "Budget review",
                "state": "live",
                "recording": False,
                "transcribing": False,
            }
        async with http.get(state["join_url"].rsplit("/", 1)[0] + "/nosuchmeeting") as response:
            assert response.status == 404

    again = await command(alice, room_id, "!visio start Other", stack, "already live")
    assert "Budget review" in body(again)

    status = await command(alice, room_id, "!visio status", stack, "is live")
    assert "Budget review" in body(status) and alice.user_id in body(status)

    ended = await command(alice, room_id, "!visio end", stack, "ended after")
    assert "Nobody joined" in body(ended)
    assert await alice.get_state(room_id, "im.vector.modular.widgets", widget_id) == {}
    final = await alice.get_state(room_id, "io.visiobridge.meeting")
    assert final is not None and final["state"] == "ended" and "ended_at" in final
    layout = await alice.get_state(room_id, "io.element.widgets.layout")
    assert layout is not None and widget_id not in layout["widgets"]

    async with aiohttp.ClientSession() as http:
        async with http.get(state["join_url"] + "/info") as response:
            assert (await response.json())["state"] == "ended"
    await command(alice, room_id, "!visio status", stack, "No meeting is live")
    unknown = await command(alice, room_id, "!visio dance", stack, "Unknown command")
    assert "!visio help" in body(unknown)
    # Bob's unprefixed "status" in a group room was never taken as a command.
    answered = [e for e in alice.timeline(room_id) if e.get("sender") == stack.bot]
    replied_to = {
        e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
        for e in answered
    }
    bobs = [e["event_id"] for e in alice.timeline(room_id) if e.get("sender") == bob.user_id]
    assert not replied_to & set(bobs)


async def test_bot_without_power_still_posts_the_link_and_says_what_to_change(
    stack: Stack,
) -> None:
    alice = await stack.user("alice")
    room_id = await stack.room_with_bot(alice, bot_power=None)
    reply = await command(alice, room_id, "!visio start", stack, "started")
    assert "/meet/" in body(reply)
    assert "a room admin must let" in body(reply)
    assert await alice.get_state(room_id, "io.visiobridge.meeting") is None


async def test_only_moderators_or_the_starter_end_and_invite_needs_power(stack: Stack) -> None:
    alice = await stack.user("alice")
    bob = await stack.user("bob")
    carol = await stack.user("carol")
    room_id = await stack.room_with_bot(alice)
    await alice.set_power_levels(room_id, invite=50)
    await alice.invite(room_id, bob.user_id)
    await bob.join(room_id)
    await command(alice, room_id, "!visio start Weekly", stack, "started")
    refused = await command(bob, room_id, "!visio end", stack, "Only room moderators")
    assert "whoever started" in body(refused)
    await command(bob, room_id, f"!visio invite {carol.user_id}", stack, "may not invite")
    await command(alice, room_id, "!visio invite not-a-user", stack, "is not a Matrix user id")
    await command(alice, room_id, f"!visio invite {carol.user_id}", stack, "Invited")
    await carol.wait_for_invite(lambda room, _: room == room_id)
    await command(alice, room_id, "!visio end", stack, "ended after")


async def test_users_below_user_level_are_refused_in_words(stack: Stack) -> None:
    alice = await stack.user("alice")
    outsider = await stack.user("outsider")
    room_id = await stack.room_with_bot(alice)
    await alice.invite(room_id, outsider.user_id)
    await outsider.join(room_id)
    await command(outsider, room_id, "!visio start", stack, "you may not use Visio Bridge")
    assert stack.bridge is not None and stack.bridge.meetings.live_in_room(room_id) is None

    # A second command within minutes gets no second refusal (no amplification).
    await outsider.send_text(room_id, "!visio help")
    await command(alice, room_id, "!visio status", stack, "No meeting is live")
    refusals = [e for e in alice.timeline(room_id) if "may not use Visio" in body(e)]
    assert len(refusals) == 1

    # An invite from them is rejected, with the reason, without the bot ever joining.
    own_room = await outsider.create_room(name="Outsider room")
    await outsider.invite(own_room, stack.bot)
    left = await outsider.wait_for_event(own_room, member_event(stack.bot, membership="leave"))
    assert "may not use Visio Bridge" in left["content"].get("reason", "")
    memberships = [
        e["content"].get("membership")
        for e in outsider.timeline(own_room)
        if e.get("type") == "m.room.member" and e.get("state_key") == stack.bot
    ]
    assert "join" not in memberships


async def test_direct_chat_needs_no_prefix_and_bot_leaves_when_alone(stack: Stack) -> None:
    alice = await stack.user("alice")
    room_id = await stack.room_with_bot(alice)
    await command(alice, room_id, "status", stack, "No meeting is live")
    await command(alice, room_id, "start Quick sync", stack, "started")
    assert stack.bridge is not None
    bridge = stack.bridge
    assert bridge.meetings.live_in_room(room_id) is not None
    await alice.leave(room_id)

    async def bot_left() -> bool:
        return room_id not in await bridge.bot.get_joined_rooms()

    await eventually(bot_left)
    assert bridge.meetings.live_in_room(room_id) is None


async def _put_transaction(
    stack: Stack, txn_id: str, events: list[JSON], token: str | None = None
) -> aiohttp.ClientResponse:
    port = stack.config["appservice.port"]
    token = token or stack.config["appservice.hs_token"]
    async with aiohttp.ClientSession() as http:
        response = await http.put(
            f"http://127.0.0.1:{port}/_matrix/app/v1/transactions/{txn_id}",
            json={"events": events},
            headers={"Authorization": f"Bearer {token}"},
        )
        await response.read()
        return response


def _forged_command(stack: Stack, user_id: str, room_id: str, text: str, n: int) -> JSON:
    return {
        "type": "m.room.message",
        "event_id": f"$replay-{n}",
        "room_id": room_id,
        "sender": user_id,
        "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": text},
    }


async def test_replayed_transaction_has_no_second_effect_and_bad_token_none(
    stack: Stack,
) -> None:
    alice = await stack.user("alice")
    room_id = await stack.room_with_bot(alice)
    event = _forged_command(stack, alice.user_id, room_id, "!visio start Replayed", 1)

    bad = await _put_transaction(stack, "replay-txn", [event], token="wrong-token")
    assert bad.status == 403
    first = await _put_transaction(stack, "replay-txn", [event])
    assert first.status == 200
    second = await _put_transaction(stack, "replay-txn", [event])
    assert second.status == 200
    # A real command sent after them is handled after them (one queue per room):
    # by its reply, any second start would have answered "already live".
    await command(alice, room_id, "!visio status", stack, "is live")
    bot_said = [body(e) for e in alice.timeline(room_id) if e.get("sender") == stack.bot]
    assert len([text for text in bot_said if 'Meeting "Replayed" started' in text]) == 1
    assert not any("already live" in body(e) for e in alice.timeline(room_id))


async def test_bridge_restarted_mid_meeting_still_knows_it(stack: Stack) -> None:
    alice = await stack.user("alice")
    room_id = await stack.room_with_bot(alice)
    await command(alice, room_id, "!visio start Budget review", stack, "started")
    before = await alice.get_state(room_id, "io.visiobridge.meeting")
    await stack.stop_bridge()
    await stack.start_bridge()
    status = await command(alice, room_id, "!visio status", stack, "is live")
    assert "Budget review" in body(status)
    assert stack.bridge is not None
    live = stack.bridge.meetings.live_in_room(room_id)
    assert before is not None and live is not None and live.id == before["meeting_id"]
    await command(alice, room_id, "!visio end", stack, "ended after")


async def test_events_sent_while_the_bridge_is_down_are_handled_once_in_order(
    stack: Stack,
) -> None:
    alice = await stack.user("alice")
    room_id = await stack.room_with_bot(alice)
    await stack.stop_bridge()
    for text in ("!visio start While down", "!visio status", "!visio end", "!visio status"):
        await alice.send_text(room_id, text)
    await stack.start_bridge()  # and pings the homeserver, which then delivers at once
    await alice.wait_for_message(room_id, from_bot(stack, "No meeting is live"))
    bot_said = [
        body(e)
        for e in alice.timeline(room_id)
        if e.get("sender") == stack.bot and e.get("type") == "m.room.message"
    ]
    replies = bot_said[bot_said.index(next(t for t in bot_said if "While down" in t)) :]
    kinds = [
        next(k for k in ("No meeting is live", "ended after", "is live", "started") if k in text)
        for text in replies
    ]
    assert kinds == ["started", "is live", "ended after", "No meeting is live"]


async def upgrade(user: Any, room_id: str) -> str:
    answer = await user.request(
        "POST", f"/_matrix/client/v3/rooms/{room_id}/upgrade", json_body={"new_version": "11"}
    )
    return str(answer["replacement_room"])


async def test_a_room_upgrade_takes_the_live_meeting_along(stack: Stack) -> None:
    alice = await stack.user("alice")
    room_id = await alice.create_room(
        name="Open room", preset="public_chat", power_level_override={"users": {stack.bot: 50}}
    )
    await alice.invite(room_id, stack.bot)
    await alice.wait_for_message(room_id, from_bot(stack, "Hello"))
    await command(alice, room_id, "!visio start Upgraded", stack, "started")
    assert stack.bridge is not None
    meeting = stack.bridge.meetings.live_in_room(room_id)
    assert meeting is not None
    new_room = await upgrade(alice, room_id)
    notice = await alice.wait_for_message(room_id, from_bot(stack, "continues in the new room"))
    assert f"/meet/{meeting.id}" in body(notice)
    # The same meeting, now the new room's: same id, widget and state event there.
    assert stack.bridge.meetings.live_in_room(new_room) is meeting
    assert stack.bridge.meetings.live_in_room(room_id) is None
    await alice.join(new_room)
    moved = await alice.wait_for_message(new_room, from_bot(stack, "moved here"))
    assert f"/meet/{meeting.id}" in body(moved)
    state = await alice.wait_for_state(
        new_room,
        "io.visiobridge.meeting",
        predicate=lambda c: bool(c) and c.get("state") == "live",
    )
    assert state is not None and state["meeting_id"] == meeting.id
    old_state = await alice.get_state(room_id, "io.visiobridge.meeting")
    assert old_state is not None and old_state["state"] == "moved"
    assert not await alice.get_state(room_id, "im.vector.modular.widgets", meeting.widget_id)
    # Commands in the new room act on it.
    await command(alice, new_room, "!visio end", stack, "ended after")


async def test_a_room_upgrade_the_bot_cannot_follow_ends_the_meeting_saying_where(
    stack: Stack,
) -> None:
    alice = await stack.user("alice")
    room_id = await stack.room_with_bot(alice)  # invite-only: the bot may not follow
    await command(alice, room_id, "!visio start Private", stack, "started")
    new_room = await upgrade(alice, room_id)
    notice = await alice.wait_for_message(room_id, from_bot(stack, "has ended"))
    assert new_room in body(notice)
    assert stack.bridge is not None
    assert stack.bridge.meetings.live_in_room(room_id) is None
    state = await alice.get_state(room_id, "io.visiobridge.meeting")
    assert state is not None and state["state"] == "ended"
