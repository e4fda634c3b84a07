"""In-process listeners (the recorder, the transcriber) attached to a router with real
aiortc peers: they get every published track's frames unchanged, video from a keyframe,
and one that fails or leaves hurts nobody."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from bridge.meeting.media import FrameHandler, MediaFrame, TrackPublished

from .helpers import Meeting, wait_for
from .test_router import contiguous_run

Meetings = Callable[..., Meeting]


class Sink:
    def __init__(self, takes: Callable[[TrackPublished], bool] = lambda track: True) -> None:
        self.takes = takes
        self.started: list[TrackPublished] = []
        self.ended: list[str] = []
        self.frames: dict[str, list[MediaFrame]] = {}

    def track_started(self, track: TrackPublished) -> FrameHandler | None:
        self.started.append(track)
        if not self.takes(track):
            return None
        frames = self.frames.setdefault(track.track_id, [])
        return frames.append

    def track_ended(self, track_id: str) -> None:
        self.ended.append(track_id)


async def test_a_sink_gets_every_track_unchanged_from_a_keyframe(meetings: Meetings) -> None:
    meeting = meetings()
    alice, bob = meeting.join("alice"), meeting.join("bob")
    early = Sink()
    meeting.router.add_sink(early)  # before anything is published
    await alice.publish()
    await wait_for(lambda: len(early.frames.get("alice/camera", [])) >= 30)
    assert alice.camera is not None
    camera = early.frames["alice/camera"]
    assert camera[0].keyframe
    assert contiguous_run(list(alice.camera.sent), [f.data for f in camera])
    assert all(b.timestamp > a.timestamp for a, b in itertools.pairwise(camera))
    assert all(b.arrival >= a.arrival for a, b in itertools.pairwise(camera))
    await wait_for(lambda: len(early.frames.get("alice/microphone", [])) >= 20)

    # A sink attached later is offered what is already published, and asks for a
    # keyframe (this encoder makes none by itself).
    late = Sink(takes=lambda track: track.kind == "video")
    before = alice.camera.keyframe_requests
    meeting.router.add_sink(late)
    assert sorted(t.track_id for t in late.started) == ["alice/camera", "alice/microphone"]
    await wait_for(lambda: late.frames.get("alice/camera"), within=3)
    assert late.frames["alice/camera"][0].keyframe
    assert alice.camera.keyframe_requests == before + 1
    assert "alice/microphone" not in late.frames

    # Bob goes on receiving; the sinks are no participants.
    await wait_for(lambda: len(bob.frames_from("alice", "camera")) >= 30)
    stats = meeting.router.stats()
    assert stats.participants == 2

    await bob.publish(camera=False)
    await wait_for(lambda: "bob/microphone" in early.frames)
    assert "bob/microphone" not in late.frames

    meeting.router.remove_sink(early)
    assert sorted(early.ended) == ["alice/camera", "alice/microphone", "bob/microphone"]
    count = len(early.frames["alice/camera"])
    await wait_for(lambda: len(late.frames["alice/camera"]) > 10)
    assert len(early.frames["alice/camera"]) == count  # nothing after it left
    await alice.close()
    await wait_for(lambda: "alice/camera" in late.ended)


async def test_a_failing_sink_loses_the_track_and_nobody_else_does(meetings: Meetings) -> None:
    meeting = meetings()
    alice, bob = meeting.join("alice"), meeting.join("bob")
    good = Sink()
    broken = Sink()

    def explode(frame: MediaFrame) -> None:
        raise RuntimeError("disk on fire")

    broken.track_started = lambda track: explode  # type: ignore[method-assign]
    meeting.router.add_sink(broken)
    meeting.router.add_sink(good)
    await alice.publish()
    await wait_for(lambda: sorted(broken.ended) == ["alice/camera", "alice/microphone"])
    await wait_for(lambda: len(good.frames.get("alice/camera", [])) >= 30)
    await wait_for(lambda: len(bob.frames_from("alice", "camera")) >= 30)
    # Its subscriptions are gone, so the router holds only what the others need.
    assert meeting.router.stats().subscriptions == 2 + 2


async def test_closing_the_router_ends_every_sinks_tracks(meetings: Meetings) -> None:
    meeting = meetings()
    alice = meeting.join("alice")
    sink = Sink()
    meeting.router.add_sink(sink)
    await alice.publish()
    await wait_for(lambda: len(sink.frames.get("alice/camera", [])) >= 5)
    await meeting.router.close()
    assert sorted(sink.ended) == ["alice/camera", "alice/microphone"]
