"""The room's meeting state event: bursts of joins and leaves are written once, and
the final state always is."""

from __future__ import annotations

import asyncio

from bridge.matrix.dispatch import RoomQueues
from bridge.matrix.meeting_room import StateUpdates
from bridge.meeting.meeting import Meeting


class SlowPublisher:
    def __init__(self) -> None:
        self.written: list[int] = []

    async def update_state(self, meeting: Meeting) -> None:
        await asyncio.sleep(0.01)  # a homeserver round trip
        self.written.append(len(meeting.participants))


async def test_a_burst_of_changes_writes_the_final_state_once() -> None:
    queues = RoomQueues()
    publisher = SlowPublisher()
    updates = StateUpdates(queues, publisher)
    meeting = Meeting("m1", "!room", "T", "@a:x", 0, "w")
    for cycle in range(20):  # 20 join-leave cycles: 40 changes
        meeting.participants[f"p{cycle}"] = object()  # type: ignore[assignment]
        updates.request(meeting)
        del meeting.participants[f"p{cycle}"]
        updates.request(meeting)
    meeting.participants["last"] = object()  # type: ignore[assignment]
    updates.request(meeting)
    await queues.drain()
    assert publisher.written == [1]


async def test_a_change_during_a_write_is_written_after_it() -> None:
    queues = RoomQueues()
    publisher = SlowPublisher()
    updates = StateUpdates(queues, publisher)
    meeting = Meeting("m1", "!room", "T", "@a:x", 0, "w")
    meeting.participants["a"] = object()  # type: ignore[assignment]
    updates.request(meeting)
    await asyncio.sleep(0.005)  # the first write is under way
    meeting.participants["b"] = object()  # type: ignore[assignment]
    updates.request(meeting)
    await queues.drain()
    # The first write read the state after the change, and the change still gets its
    # own write: nothing requested during a write is lost.
    assert publisher.written == [2, 2]


async def test_paused_queues_hold_jobs_until_resumed() -> None:
    queues = RoomQueues()
    ran: list[str] = []

    async def job(name: str) -> None:
        ran.append(name)

    queues.pause()
    queues.submit("!a", lambda: job("first"))
    queues.submit("!a", lambda: job("second"))
    await asyncio.sleep(0.01)
    assert ran == []
    queues.resume()
    queues.submit("!a", lambda: job("third"))
    await queues.drain()
    assert ran == ["first", "second", "third"]
