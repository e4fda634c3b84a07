"""Faults the meeting survives: the homeserver going away for a while."""

from __future__ import annotations

from tests.integration.conftest import eventually
from tests.integration.test_signaling import Meet, meet  # noqa: F401 - the fixture


async def test_media_goes_on_while_the_homeserver_is_down(meet: Meet) -> None:  # noqa: F811
    alice, joined_a = await meet.joined("alice")
    bob, _ = await meet.joined("bob")
    await alice.publish()
    a_id = joined_a["participant_id"]

    async def bob_receives(more_than: int) -> bool:
        return len(bob.frames_from(a_id, "camera")) > more_than

    await eventually(lambda: bob_receives(10), within=20)
    homeserver = meet.stack.homeserver
    await homeserver.stop()
    try:
        # A second's worth of frames and more, with no homeserver at all.
        before = len(bob.frames_from(a_id, "camera"))
        await eventually(lambda: bob_receives(before + 30), within=10)
        assert meet.stack.bridge is not None
        assert len(meet.meeting.participants) == 2
    finally:
        await homeserver.start()
    await meet.stack.bridge.ping_homeserver()
    owner = meet.users["alice"]
    await owner.send_text(meet.room_id, "!visio status")
    status = await owner.wait_for_message(
        meet.room_id, lambda e: "in the meeting now" in e["content"].get("body", "")
    )
    assert "2 in the meeting now" in status["content"]["body"]
    # And media never stopped.
    after = len(bob.frames_from(a_id, "camera"))
    await eventually(lambda: bob_receives(after + 10), within=10)
