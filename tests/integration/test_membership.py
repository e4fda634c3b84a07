"""Room membership governs the meeting after the join too: whoever leaves the room, is
kicked or banned, is out of the meeting within a second, told why."""

from __future__ import annotations

import pytest

from tests.integration.test_signaling import Meet, meet  # noqa: F401 - the fixture


@pytest.mark.parametrize("how", ["kick", "leave"])
async def test_leaving_the_room_ends_the_meeting_session(meet: Meet, how: str) -> None:  # noqa: F811
    alice, _ = await meet.joined("alice")
    bob, joined_b = await meet.joined("bob")
    await bob.publish()
    await alice.expect("participant_joined")
    owner, member = meet.users["alice"], meet.users["bob"]
    if how == "kick":
        await owner.kick(meet.room_id, member.user_id, reason="Not invited to this one")
    else:
        await member.leave(meet.room_id)
    error = await bob.expect("error", within=5)
    assert error["code"] == "unauthorized"
    assert "no longer a member" in error["message"]
    left = await alice.expect("participant_left")
    assert left["participant_id"] == joined_b["participant_id"]
    # The socket is closed and the media released; the meeting goes on for alice.
    await bob.expect("_closed")
    assert meet.stack.bridge is not None
    assert [p.user_id for p in meet.meeting.participants.values()] == [owner.user_id]
