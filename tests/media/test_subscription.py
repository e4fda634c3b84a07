"""Subscription queues: bounded, skip to keyframe, and a slow subscriber hurts nobody else."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from bridge.media.frames import EncodedFrame
from bridge.media.publisher import PublishedTrack
from bridge.media.subscription import Subscription, SubscriptionClosed

from .helpers import FakeClock, loopback_settings

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


def frame(n: int, key: bool = False) -> EncodedFrame:
    return EncodedFrame(n.to_bytes(4, "big"), n * 3000, key)


def video(capacity: int = 4) -> tuple[Subscription, list[int]]:
    requests: list[int] = []
    sub = Subscription(capacity, video=True, request_keyframe=lambda: requests.append(1))
    return sub, requests


async def drain(sub: Subscription) -> list[int]:
    out = []
    while len(sub):
        out.append(int.from_bytes((await sub.get()).data, "big"))
    return out


async def test_video_starts_at_a_keyframe() -> None:
    sub, requests = video()
    sub.push(frame(1))
    sub.push(frame(2, key=True))
    sub.push(frame(3))
    assert await drain(sub) == [2, 3]
    assert sub.dropped == 1
    assert requests == []  # a keyframe came before the consumer asked


async def test_first_read_asks_for_a_keyframe_when_none_came() -> None:
    sub, requests = video()
    consumer = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert requests == [1]
    sub.push(frame(1))
    sub.push(frame(2, key=True))
    assert (await consumer).data == frame(2).data


async def test_a_lost_keyframe_request_is_made_again_while_frames_are_skipped() -> None:
    # The first PLI (or the keyframe it caused) can be lost; the subscriber must not stay
    # without picture until the publisher happens to send a keyframe on its own.
    sub, requests = video()
    consumer = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert requests == [1]
    sub.push(frame(1))
    sub.push(frame(2))
    assert requests == [1, 1, 1]  # the track's requester rate-limits these
    sub.push(frame(3, key=True))
    sub.push(frame(4))
    assert requests == [1, 1, 1]
    assert (await consumer).data == frame(3).data


async def test_a_paused_subscription_forwards_nothing_and_resumes_at_a_keyframe() -> None:
    sub, requests = video()
    sub.push(frame(1, key=True))
    assert (await sub.get()).data == frame(1).data
    sub.push(frame(2))
    sub.pause()
    assert len(sub) == 0  # what was queued is dropped too
    sub.push(frame(3, key=True))
    sub.push(frame(4))
    assert len(sub) == 0 and sub.skipped_paused == 2
    consumer = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    requests.clear()
    sub.resume()
    assert requests == [1]  # a picture at once, not at the publisher's next keyframe
    sub.push(frame(5))
    sub.push(frame(6, key=True))
    assert (await consumer).data == frame(6).data


async def test_before_the_consumer_reads_only_the_newest_keyframe_is_kept() -> None:
    sub, _ = video(capacity=10)
    for n in range(1, 6):
        sub.push(frame(n, key=n in (1, 4)))
    assert await drain(sub) == [4, 5]


async def test_overflow_drops_and_skips_to_the_next_keyframe() -> None:
    sub, requests = video(capacity=4)
    sub.push(frame(0, key=True))
    await sub.get()  # the consumer is ready, then stalls
    for n in range(1, 5):
        sub.push(frame(n))
    assert len(sub) == 4
    sub.push(frame(5))  # full: everything goes, and a keyframe is requested
    assert len(sub) == 0 and sub.waiting_for_keyframe and requests == [1]
    for n in range(6, 9):
        sub.push(frame(n))
    sub.push(frame(9, key=True))
    sub.push(frame(10))
    assert await drain(sub) == [9, 10]
    assert sub.dropped == 8 and sub.overflows == 1


async def test_overflow_on_a_keyframe_restarts_from_it() -> None:
    sub, requests = video(capacity=2)
    sub.push(frame(0, key=True))
    await sub.get()
    sub.push(frame(1))
    sub.push(frame(2))
    sub.push(frame(3, key=True))
    assert await drain(sub) == [3]
    assert requests == []


async def test_audio_overflow_keeps_the_newest_packet() -> None:
    sub = Subscription(3, video=False, request_keyframe=lambda: None)
    for n in range(7):
        sub.push(frame(n, key=True))
    assert await drain(sub) == [6]


async def test_close_wakes_the_consumer() -> None:
    sub, _ = video()
    consumer = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    sub.close()
    with pytest.raises(SubscriptionClosed):
        await consumer
    sub.push(frame(1, key=True))
    assert len(sub) == 0


class FakeReceiver:
    """Stands in for the publisher's RTCRtpReceiver: records the PLIs sent to it."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.plis: list[float] = []

    def getSynchronizationSources(self) -> list[object]:
        return []

    async def _send_rtcp_pli(self, media_ssrc: int) -> None:
        self.plis.append(self.clock.now())


async def test_slow_subscriber_falls_behind_alone() -> None:
    """Fan-out through a real PublishedTrack: one consumer reads, one never does."""
    clock = FakeClock()
    receiver = FakeReceiver(clock)
    settings = loopback_settings(subscription_queue_frames=8)
    track = PublishedTrack(
        "alice",
        "camera",
        VP8,
        receiver,  # type: ignore[arg-type]
        1234,
        settings,
        clock,
        asyncio.ensure_future,
    )
    fast, slow = track.subscribe(), track.subscribe()
    got: list[int] = []

    async def read_fast() -> None:
        while True:
            got.append(int.from_bytes((await fast.get()).data, "big"))

    reader = asyncio.create_task(read_fast())
    await asyncio.sleep(0)
    slow_first = asyncio.create_task(slow.get())  # the slow one reads once, then stalls
    await asyncio.sleep(0)
    for n in range(300):
        track.push(frame(n, key=n % 100 == 0))
        clock.advance(1 / 30)
        await asyncio.sleep(0)
    assert got == list(range(300))  # the fast subscriber lost nothing, in order
    await slow_first
    assert len(slow) <= 8  # memory stays bounded
    assert slow.overflows >= 2 and slow.dropped > 250
    # The slow one skipped to keyframes: whatever it holds starts with one.
    held = await drain(slow)
    assert not held or held[0] % 100 == 0
    await asyncio.sleep(0)
    assert 1 <= len(receiver.plis) <= 12  # rate-limited requests, not one per dropped frame
    reader.cancel()
    track.close()
