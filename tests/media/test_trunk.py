"""Trunks between two routers in one process (the host answers, the satellite offers),
with real aiortc peers over loopback."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import pytest
from aiortc import RTCRtpSender, sdp
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.media import (
    ActiveSpeaker,
    MediaError,
    ParticipantMediaClosed,
    TrackPublished,
    TrackUnpublished,
)
from bridge.media.peer import new_peer_connection
from bridge.media.router import Router
from bridge.media.sdp_rules import check_trunk_answer, check_trunk_offer
from bridge.media.trunk import Trunk
from bridge.meeting.media import MAX_TRUNK_STATE_BYTES, MAX_TRUNK_TRACKS, TrunkLimits

from .helpers import Client, Meeting, loopback_settings, opus_loop, wait_for
from .test_router import RawVideoTrack, contiguous_run, directions
from .test_sdp_fuzz import odd_lines

Meetings = Callable[..., Meeting]

SMALL = TrunkLimits(audio=2, video=2)


@dataclass
class Listener:
    """A door's side of a trunk: records what the trunk tells it."""

    opened: int = 0
    states: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    def trunk_open(self) -> None:
        self.opened += 1

    def trunk_state(self, message: str) -> None:
        self.states.append(message)

    def trunk_closed(self, reason: str) -> None:
        self.closed.append(reason)


@dataclass
class Link:
    """A trunk between a host meeting (A) and a satellite meeting (B)."""

    host: Trunk
    satellite: Trunk
    on_host: Listener
    on_satellite: Listener


def open_trunk(meeting: Meeting, trunk_id: str, limits: TrunkLimits) -> tuple[Trunk, Listener]:
    listener = Listener()
    return meeting.router.add_trunk(trunk_id, listener, limits), listener


async def link(
    host: Meeting, satellite: Meeting, limits: TrunkLimits = SMALL, name: str = "b"
) -> Link:
    """Open and negotiate a trunk, and wait until both ends are open."""
    trunk_a, on_a = open_trunk(host, f"to-{name}", limits)
    trunk_b, on_b = open_trunk(satellite, "to-host", limits)
    await trunk_b.accept_answer(await trunk_a.answer(await trunk_b.offer()))
    await wait_for(lambda: on_a.opened and on_b.opened)
    return Link(trunk_a, trunk_b, on_a, on_b)


def mapped(trunk: Trunk) -> int:
    """In slots the other side has mapped to a track."""
    return sum(slot.in_track_id is not None for slot in trunk._slots)


def mid_of(trunk: Trunk, kind: str) -> str:
    return next(slot.mid for slot in trunk._slots if slot.kind == kind)


def opus_from(client: Client, participant_id: str) -> set[bytes]:
    return {f.data for f in client.frames_from(participant_id, "microphone")}


async def test_tracks_cross_both_ways_unchanged(meetings: Meetings) -> None:
    a, b = meetings(), meetings()
    alice, dave = a.join("alice"), a.join("dave")
    await alice.publish()  # before the trunk: it is given alice's tracks when it opens
    trunk = await link(a, b)
    trunk.host.add_remote("bob")  # before bob publishes
    bob = b.join("bob")
    await bob.publish()
    carols = [b.join(f"carol{i}") for i in range(3)]
    await wait_for(lambda: mapped(trunk.satellite) == 2)
    trunk.satellite.add_remote("alice")  # after the slot map came: it was kept

    await wait_for(
        lambda: (
            all(len(c.frames_from("alice", "camera")) >= 30 for c in carols)
            and len(dave.frames_from("bob", "camera")) >= 30
            and all(c.frames_from("alice", "microphone") for c in carols)
            and dave.frames_from("bob", "microphone")
        )
    )
    assert alice.camera is not None and bob.camera is not None
    for carol in carols:
        received = [f.data for f in carol.frames_from("alice", "camera")]
        assert contiguous_run(list(alice.camera.sent), received)
        assert carol.frames_from("alice", "camera")[0].keyframe
        assert opus_from(carol, "alice") <= set(opus_loop())
    assert contiguous_run(
        list(bob.camera.sent), [f.data for f in dave.frames_from("bob", "camera")]
    )
    assert opus_from(dave, "bob") <= set(opus_loop())
    assert sorted(str(msid) for msid, _ in directions(carols[0].offers[-1]).values()) == [
        "alice alice.camera",
        "alice alice.microphone",
        "bob bob.camera",
        "bob bob.microphone",
    ]
    assert set(b.events_of(TrackPublished)) == {
        TrackPublished("alice", "alice/microphone", "audio", "microphone", "audio/opus"),
        TrackPublished("alice", "alice/camera", "video", "camera", "video/VP8"),
        TrackPublished("bob", "bob/microphone", "audio", "microphone", "audio/opus"),
        TrackPublished("bob", "bob/camera", "video", "camera", "video/VP8"),
    }

    # Each track crossed once: on A, alice's two tracks have one trunk subscription each
    # (beside dave's), whoever receives them on B; bob's tracks never go back.
    carried = [slot.out.track_id for slot in trunk.host._slots if slot.out is not None]
    assert sorted(carried) == ["alice/camera", "alice/microphone"]
    stats = a.router.stats()
    # alice, dave, bob (no connection); alice's publish and receive, dave's, the trunk.
    assert (stats.participants, stats.peer_connections, stats.trunks) == (3, 4, 1)
    # alice's tracks: dave and the trunk; bob's: alice and dave.
    assert (stats.published_tracks, stats.subscriptions, stats.untrunked_tracks) == (4, 8, 0)
    stats = b.router.stats()
    # bob's publish and receive, three carols, the trunk; alice's tracks: three carols and
    # bob, bob's tracks: three carols and the trunk.
    assert (stats.participants, stats.peer_connections, stats.subscriptions) == (5, 6, 16)
    assert stats.frames_forwarded > 0


async def test_unpublish_and_close_take_the_tracks_away(meetings: Meetings) -> None:
    a, b = meetings(), meetings()
    trunk = await link(a, b)
    alice, erin = a.join("alice"), a.join("erin")
    await alice.publish(microphone=False)
    await erin.publish(camera=False)
    remote_alice = trunk.satellite.add_remote("alice")
    remote_erin = trunk.satellite.add_remote("erin")
    carol = b.join("carol")
    await wait_for(
        lambda: carol.frames_from("alice", "camera") and carol.frames_from("erin", "microphone")
    )

    await alice.media.close()  # on A: the trunk frees alice's slot, B unpublishes
    await wait_for(lambda: b.events_of(TrackUnpublished))
    assert b.events_of(TrackUnpublished) == [
        TrackUnpublished("alice", "alice/camera", "video", "camera")
    ]
    assert remote_alice.tracks == ()
    inactive = ("alice alice.camera", "inactive")
    await wait_for(lambda: inactive in directions(carol.offers[-1]).values())

    await trunk.satellite.close()
    assert trunk.on_satellite.closed == ["left"]
    assert b.events[-1] == TrackUnpublished("erin", "erin/microphone", "audio", "microphone")
    assert remote_erin.tracks == () and not remote_erin.closed
    stats = b.router.stats()
    assert (stats.trunks, stats.published_tracks, stats.peer_connections) == (0, 0, 1)
    # The people behind it stay until the door takes them out.
    await remote_erin.close()
    assert b.events[-1] == ParticipantMediaClosed("erin", "left")
    assert b.router.participant("erin") is None

    # The host sees the connection go, and releases its side.
    await wait_for(lambda: trunk.on_host.closed)
    assert trunk.on_host.closed == ["connection lost"]
    await wait_for(lambda: a.router.stats().trunks == 0)
    stats = a.router.stats()
    # erin's publish connection, and her receive connection (alice's camera, gone).
    assert (stats.peer_connections, stats.subscriptions) == (2, 0)
    await trunk.satellite.close()
    await trunk.host.close()
    assert trunk.on_satellite.closed == ["left"] and trunk.on_host.closed == ["connection lost"]


async def test_a_remote_speaker_becomes_active_speaker(
    meetings: Meetings, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = meetings(), meetings()
    trunk = await link(a, b)
    received: list[dict[str, int]] = []
    on_levels = trunk.satellite._on_levels

    def spy(message: dict[str, object]) -> None:
        received.append(cast(dict[str, int], message["levels"]))
        on_levels(message)

    monkeypatch.setattr(trunk.satellite, "_on_levels", spy)
    trunk.satellite.add_remote("alice")
    alice, bob = a.join("alice"), b.join("bob")
    await alice.publish(camera=False, levels=True)
    await bob.publish(camera=False, levels=True)
    trunk.host.add_remote("bob")
    assert alice.microphone is not None
    alice.microphone.loud = True  # bob is silent

    # aiortc forwards no levels on the packets: they cross in the trunk's messages.
    await wait_for(lambda: b.events_of(ActiveSpeaker))
    assert b.events_of(ActiveSpeaker) == [ActiveSpeaker("alice")]
    audio = mid_of(trunk.host, "audio")
    assert any(levels.get(audio, 127) < 30 for levels in received)  # in trunk messages
    await wait_for(lambda: a.events_of(ActiveSpeaker))
    assert a.events_of(ActiveSpeaker) == [ActiveSpeaker("alice")]


async def test_a_track_waits_for_a_free_slot(meetings: Meetings) -> None:
    a, b = meetings(), meetings()
    trunk = await link(a, b, TrunkLimits(audio=1, video=1))
    alice, erin = a.join("alice"), a.join("erin")
    await alice.publish(microphone=False)
    await erin.publish(microphone=False)
    trunk.satellite.add_remote("alice")
    trunk.satellite.add_remote("erin")
    carol = b.join("carol")
    await wait_for(lambda: carol.frames_from("alice", "camera"))
    assert a.router.stats().untrunked_tracks == 1
    assert carol.frames_from("erin", "camera") == []

    await alice.media.close()  # erin's camera takes the slot
    assert erin.camera is not None
    camera = erin.camera

    def erins_own() -> list[bytes]:
        sent = set(camera.sent)
        return [f.data for f in carol.frames_from("erin", "camera") if f.data in sent]

    # Alice's last frames, still on the way in the slot, may come first under erin's name.
    await wait_for(lambda: len(erins_own()) >= 5)
    assert a.router.stats().untrunked_tracks == 0
    sent = list(camera.sent)
    # Carol's jitter buffer lets alice's last frame out when the next packet comes (erin's,
    # on the same m-line): the test client files it under erin.
    frames = [f for f in carol.frames_from("erin", "camera") if f.data in sent]
    assert frames[0].keyframe
    assert contiguous_run(sent, [f.data for f in frames])


async def test_a_trunk_offer_is_checked(meetings: Meetings) -> None:
    a, b = meetings(), meetings()
    trunk_a, on_a = open_trunk(a, "to-b", SMALL)
    big, _ = open_trunk(b, "big", TrunkLimits(audio=3, video=2))
    big_offer = await big.offer()
    trunk_b, on_b = open_trunk(b, "to-a", SMALL)
    offer = await trunk_b.offer()

    def without_data_channels(offer: str) -> str:
        description = sdp.SessionDescription.parse(offer)
        description.media = [m for m in description.media if m.kind != "application"]
        description.group[0].items = [m.rtp.muxId for m in description.media]
        return str(description)

    def without_bundle(offer: str) -> str:
        return "".join(
            line for line in offer.splitlines(True) if not line.startswith("a=group:BUNDLE")
        )

    for bad, error in [
        ("\x00garbage", "not SDP"),
        ("v=0\r\n" + "x" * 100_000, "larger"),
        (big_offer, "3 audio and 3 video sections; at most 2 and 3"),
        (without_data_channels(offer), "data channels"),
        (without_bundle(offer), "bundle"),
        (offer.replace("a=sendrecv", "a=sendonly"), "sendrecv"),
        (offer.replace("opus/48000", "G722/48000"), "no supported codec"),
    ]:
        with pytest.raises(MediaError, match=error):
            await trunk_a.answer(bad)
        stats = a.router.stats()
        assert (stats.trunks, stats.peer_connections, stats.tasks) == (1, 0, 0)
    with pytest.raises(MediaError, match="no trunk offer"):
        await trunk_a.accept_answer(big_offer)
    with pytest.raises(MediaError, match="not open"):
        trunk_a.send_state("hello")

    # Refused offers left the trunk as it was: a good one is answered.
    answer = await trunk_a.answer(offer)
    with pytest.raises(MediaError, match="negotiated once"):
        await trunk_a.answer(big_offer)
    with pytest.raises(MediaError, match="sections are not those"):
        await trunk_b.accept_answer(big_offer)
    await trunk_b.accept_answer(answer)
    await wait_for(lambda: on_a.opened and on_b.opened)
    assert a.router.stats().peer_connections == 1

    # The rest of the API refuses what makes no sense.
    trunk_a.add_remote("x")
    with pytest.raises(MediaError, match="already has media"):
        trunk_a.add_remote("x")
    for bad_id in ("", "a b", "alice/camera", "x" * 65):
        with pytest.raises(MediaError, match="participant id"):
            trunk_a.add_remote(bad_id)
    remote = a.router.participant("x")
    assert remote is not None
    with pytest.raises(MediaError, match="comes over the trunk"):
        await remote.publish("v=0", {})
    with pytest.raises(MediaError, match="comes over the trunk"):
        await remote.accept_answer("v=0")
    with pytest.raises(MediaError, match="open already"):
        open_trunk(a, "to-b", SMALL)
    for limits in (TrunkLimits(0, 0), TrunkLimits(65, 1), TrunkLimits(-1, 2)):
        with pytest.raises(MediaError, match="slots"):
            open_trunk(a, "other", limits)
    with pytest.raises(MediaError, match="at most 64 KiB"):
        trunk_a.send_state("x" * (MAX_TRUNK_STATE_BYTES + 1))
    await big.close()


async def test_bad_messages_are_dropped_and_media_flows_on(meetings: Meetings) -> None:
    a, b = meetings(), meetings()
    trunk = await link(a, b)
    alice = a.join("alice")
    await alice.publish()
    trunk.satellite.add_remote("alice")
    carol = b.join("carol")
    await wait_for(lambda: carol.frames_from("alice", "camera"))

    # State messages both ways.
    trunk.host.send_state("from A")
    trunk.satellite.send_state('{"from": "B"}')
    await wait_for(lambda: trunk.on_satellite.states and trunk.on_host.states)
    assert trunk.on_satellite.states == ["from A"]
    assert trunk.on_host.states == ['{"from": "B"}']

    # What A's bridge could send B, were it broken or hostile (sent past its checks).
    media, state = trunk.host._media, trunk.host._state
    assert media is not None and state is not None
    audio, video = mid_of(trunk.host, "audio"), mid_of(trunk.host, "video")
    bad: list[str | bytes] = [
        "not json",
        b"\x00binary",
        "[1, 2]",
        "[" * 10_000 + "]" * 10_000,
        json.dumps({"slot": "99", "track": "mallory/camera", "kind": "video"}),
        json.dumps({"slot": audio, "track": "alice/camera", "kind": "video"}),
        json.dumps({"slot": video, "track": "alice/camera", "kind": "audio"}),
        json.dumps({"slot": video, "track": "alice/hologram", "kind": "video"}),
        json.dumps({"slot": video, "track": "a b/camera", "kind": "video"}),
        json.dumps({"slot": video, "track": "alice/x/camera", "kind": "video"}),
        json.dumps({"slot": video, "track": 7, "kind": "video"}),
        json.dumps({"slot": video, "track": None, "extra": 1}),
        json.dumps({"slot": [video], "track": None}),
        json.dumps({"levels": {"99": 3}}),
        json.dumps({"levels": {audio: 300}}),
        json.dumps({"levels": {audio: True}}),
        json.dumps({"levels": {video: 3}}),
        json.dumps({"levels": [3]}),
        json.dumps({"slot": video, "track": "alice/screen", "kind": "video", "pad": "x" * 70_000}),
    ]
    for message in bad:
        media.send(message)
    state.send(b"binary state")
    state.send("x" * (MAX_TRUNK_STATE_BYTES + 1))
    trunk.host.send_state("still here")
    await wait_for(lambda: trunk.satellite.messages_dropped == len(bad) + 2)
    await wait_for(lambda: trunk.on_satellite.states == ["from A", "still here"])

    # Nothing was disturbed: alice's tracks are as they were, and still flow.
    before = len(carol.frames_from("alice", "camera"))
    await wait_for(lambda: len(carol.frames_from("alice", "camera")) > before + 10)
    assert b.events_of(TrackUnpublished) == []
    assert len(b.events_of(TrackPublished)) == 2
    assert b.router.stats().published_tracks == 2


async def test_a_host_forwards_between_its_trunks(meetings: Meetings) -> None:
    a, b, c = meetings(), meetings(), meetings()
    to_b, to_c = await link(a, b), await link(a, c, name="c")
    bob = b.join("bob")
    await bob.publish(microphone=False)
    to_b.host.add_remote("bob")  # on A, behind the trunk to B
    to_c.satellite.add_remote("bob")  # on C, behind the trunk to A
    carol = c.join("carol")
    await wait_for(lambda: len(carol.frames_from("bob", "camera")) >= 10)
    assert bob.camera is not None
    received = [f.data for f in carol.frames_from("bob", "camera")]
    assert contiguous_run(list(bob.camera.sent), received)
    # Bob's camera went to C, not back to B.
    assert [s.out.track_id for s in to_c.host._slots if s.out] == ["bob/camera"]
    assert [s.out for s in to_b.host._slots if s.out] == []


async def test_h264_crosses_a_trunk_of_h264(meetings: Meetings) -> None:
    h264 = loopback_settings(video_codecs=["H264"])
    a, b = meetings(settings=h264), meetings(settings=h264)
    trunk = await link(a, b)
    pc = trunk.host._pc
    assert pc is not None and "VP8" not in pc.remoteDescription.sdp
    alice = a.join("alice")
    alice.publish_pc = new_peer_connection([])
    alice._add(RawVideoTrack(), "camera")  # aiortc encodes H.264, as Chromium offers it
    await alice.renegotiate_publish()
    trunk.satellite.add_remote("alice")
    carol = b.join("carol")
    await wait_for(lambda: len(carol.frames_from("alice", "camera")) >= 5)
    frames = carol.frames_from("alice", "camera")
    assert frames[0].keyframe and frames[0].data.startswith(b"\x00\x00\x00\x01")
    assert a.router.stats().untrunked_tracks == 0
    published = b.events_of(TrackPublished)
    assert [e.mime_type for e in published] == ["video/H264"]


def publish_h264_only(client: Client) -> None:
    """A camera whose publisher offers H.264 alone (a device without VP8)."""
    client.publish_pc = new_peer_connection([])
    client._add(RawVideoTrack(), "camera")
    h264 = [
        c
        for c in RTCRtpSender.getCapabilities("video").codecs
        if c.mimeType in ("video/H264", "video/rtx")
    ]
    client._transceiver_of("camera").setCodecPreferences(h264)


async def test_each_video_codec_has_its_slots(meetings: Meetings) -> None:
    # Both bridges take VP8 and H.264 from publishers (the default): the trunk has slots
    # for each, and an H.264-only camera crosses beside a VP8 one.
    a, b = meetings(), meetings()
    trunk = await link(a, b)
    codecs = [slot.codec.mimeType for slot in trunk.host._slots if slot.kind == "video"]
    assert codecs == ["video/VP8"] * 2 + ["video/H264"]
    alice = a.join("alice")
    publish_h264_only(alice)
    await alice.renegotiate_publish()
    bob = a.join("bob")
    await bob.publish(microphone=False)
    for name in ("alice", "bob"):
        trunk.satellite.add_remote(name)
    carol = b.join("carol")
    await wait_for(lambda: len(carol.frames_from("alice", "camera")) >= 5)
    await wait_for(lambda: len(carol.frames_from("bob", "camera")) >= 5)
    assert carol.frames_from("alice", "camera")[0].data.startswith(b"\x00\x00\x00\x01")
    assert a.router.stats().untrunked_tracks == 0
    mime_types = sorted(e.mime_type for e in b.events_of(TrackPublished) if e.kind == "video")
    assert mime_types == ["video/H264", "video/VP8"]


async def test_a_host_without_a_codec_answers_its_slots_with_another(meetings: Meetings) -> None:
    # The host takes VP8 only: the satellite's H.264 slots become VP8 slots, the trunk
    # opens, and only an H.264-only camera stays on its side (logged, counted).
    a, b = meetings(settings=loopback_settings(video_codecs=["VP8"])), meetings()
    trunk = await link(a, b)
    codecs = [slot.codec.mimeType for slot in trunk.satellite._slots if slot.kind == "video"]
    assert codecs == ["video/VP8"] * 3
    dave = b.join("dave")
    publish_h264_only(dave)
    await dave.renegotiate_publish()
    erin = b.join("erin")
    await erin.publish(microphone=False)
    for name in ("dave", "erin"):
        trunk.host.add_remote(name)
    frank = a.join("frank")
    await wait_for(lambda: len(frank.frames_from("erin", "camera")) >= 5)
    await wait_for(lambda: b.router.stats().untrunked_tracks == 1)
    assert frank.frames_from("dave", "camera") == []


async def test_the_largest_trunk_offer_fits_in_a_matrix_event() -> None:
    # The offer crosses as a room event: Synapse refuses events over 64 KiB, and the
    # trunk would never come up. The most tracks the config allows must fit, envelope
    # (ids, signatures, hashes) included.
    router = Router("fits", loopback_settings(), lambda event: None)
    try:
        limits = TrunkLimits(audio=MAX_TRUNK_TRACKS, video=MAX_TRUNK_TRACKS)
        offer = await router.add_trunk("fits", Listener(), limits).offer()
    finally:
        await router.close()
    content = {"version": 1, "host": "@visio:agency-a.gouv.fr", "meeting_id": "x" * 12}
    event = json.dumps({**content, "trunk_id": "y" * 24, "sdp": offer})
    assert len(event.encode()) + 2048 < 65536, len(event)
    assert offer.count("m=video") == limits.video_sections(2)


@functools.cache
def trunk_offer() -> str:
    """A real trunk offer (2 audio, 2 video, data channels), made once."""

    async def offer() -> str:
        router = Router("fuzz", loopback_settings(), lambda event: None)
        try:
            return await router.add_trunk("fuzz", Listener(), SMALL).offer()
        finally:
            await router.close()

    return asyncio.run(offer())


@st.composite
def mutated_trunk_sdp(draw: st.DrawFn) -> str:
    lines = trunk_offer().strip().split("\r\n")
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        action = draw(st.sampled_from(["delete", "duplicate", "replace", "insert", "cut"]))
        index = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        if action == "delete" and len(lines) > 1:
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action in ("replace", "insert"):
            lines[index : index + (action == "replace")] = [draw(odd_lines)]
        else:
            lines[index] = lines[index][: draw(st.integers(min_value=0, max_value=40))]
    return "\r\n".join(lines) + "\r\n"


@settings(max_examples=200, deadline=None)
@given(text=mutated_trunk_sdp())
def test_mutated_trunk_sdp_is_accepted_or_refused_in_words(text: str) -> None:
    media_settings = loopback_settings()
    offered = [
        (str(m.rtp.muxId), m.kind) for m in sdp.SessionDescription.parse(trunk_offer()).media
    ]
    for check in (
        lambda: check_trunk_offer(text, media_settings, 2, 2),
        lambda: check_trunk_answer(text, media_settings, offered),
    ):
        try:
            checked = check()
        except MediaError as refusal:
            assert str(refusal) and refusal.code == "bad_sdp"
        else:
            assert checked.sdp.startswith("v=0")
