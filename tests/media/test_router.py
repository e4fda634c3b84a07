"""The router with real aiortc peers over loopback, in one process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aioice.ice
import av
import pytest
from aiortc import RTCIceCandidate, VideoStreamTrack, sdp

from bridge.media import (
    ActiveSpeaker,
    MediaError,
    ParticipantMediaClosed,
    TrackPublished,
    TrackUnpublished,
    aiortc_hooks,
)
from bridge.media.peer import new_peer_connection
from tests.harness.synthetic import pattern_frame

from .conftest import released
from .helpers import Client, FakeClock, Meeting, loopback_settings, wait_for

Meetings = Callable[..., Meeting]

#: Every test here runs on the frame path and on the packet path.
BOTH_PATHS = True


def contiguous_run(sent: list[bytes], received: list[bytes]) -> bool:
    """Whether ``received`` is ``sent`` from some frame on, byte for byte."""
    first = sent.index(received[0])
    return received == sent[first : first + len(received)]


def directions(offer: str) -> dict[str, tuple[str | None, str | None]]:
    """msid -> direction, per m-line of an offer."""
    return {
        str(m.rtp.muxId): (m.msid, m.direction) for m in sdp.SessionDescription.parse(offer).media
    }


async def test_subscriber_gets_the_publishers_encoded_frames_unchanged(meetings: Meetings) -> None:
    meeting = meetings()
    alice, bob = meeting.join("alice"), meeting.join("bob")
    await alice.publish()
    await wait_for(lambda: len(bob.frames_from("alice", "camera")) >= 30)
    assert alice.camera is not None

    received = [f.data for f in bob.frames_from("alice", "camera")]
    assert contiguous_run(list(alice.camera.sent), received)
    assert bob.frames_from("alice", "camera")[0].keyframe
    await wait_for(lambda: len(bob.frames_from("alice", "microphone")) >= 20)

    # Whose track and which source, as the subscriber's SDP says it.
    assert sorted(str(msid) for msid, _ in directions(bob.offers[-1]).values()) == [
        "alice alice.camera",
        "alice alice.microphone",
    ]
    assert meeting.events_of(TrackPublished) == [
        TrackPublished("alice", "alice/microphone", "audio", "microphone", "audio/opus"),
        TrackPublished("alice", "alice/camera", "video", "camera", "video/VP8"),
    ]
    stats = meeting.router.stats()
    assert (stats.participants, stats.peer_connections, stats.subscriptions) == (2, 2, 2)
    assert stats.frames_forwarded > 0
    assert alice.frames_from("bob", "camera") == []


async def test_subscriber_keyframe_requests_reach_the_publisher_rate_limited(
    meetings: Meetings,
) -> None:
    clock = FakeClock()
    meeting = meetings(clock=clock)
    alice, bob = meeting.join("alice"), meeting.join("bob")
    await alice.publish(microphone=False)
    await wait_for(lambda: bob.frames_from("alice", "camera"))
    camera = alice.camera
    assert camera is not None
    before = camera.keyframe_requests
    clock.advance(1)

    receiver, ssrc = bob.receiver_for("alice", "camera")
    for _ in range(10):  # a burst of PLIs, as a struggling decoder sends them
        await aiortc_hooks.send_pli(receiver, ssrc)
    await wait_for(lambda: camera.keyframe_requests == before + 1)
    keyframes = sum(f.keyframe for f in bob.frames_from("alice", "camera"))
    await wait_for(lambda: sum(f.keyframe for f in bob.frames_from("alice", "camera")) > keyframes)
    await asyncio.sleep(0.2)
    assert camera.keyframe_requests == before + 1  # the rest waits for the interval

    clock.advance(0.3)  # one trailing request for the suppressed ones, no more
    await wait_for(lambda: camera.keyframe_requests == before + 2)
    clock.advance(5)
    await asyncio.sleep(0.1)
    assert camera.keyframe_requests == before + 2


async def test_late_subscriber_gets_a_keyframe_fast(meetings: Meetings) -> None:
    meeting = meetings()
    alice, bob = meeting.join("alice"), meeting.join("bob")
    await alice.publish(microphone=False)
    await wait_for(lambda: len(bob.frames_from("alice", "camera")) >= 30)
    assert alice.camera is not None
    before = alice.camera.keyframe_requests  # the encoder makes no periodic keyframes

    carol = meeting.join("carol")
    # Without the request carol would wait forever: this encoder makes no periodic
    # keyframes. Typically 0.2 s; the bound leaves room for a loaded CI machine.
    await wait_for(lambda: carol.frames_from("alice", "camera"), within=3)
    assert carol.frames_from("alice", "camera")[0].keyframe
    assert alice.camera.keyframe_requests == before + 1
    received = [f.data for f in carol.frames_from("alice", "camera")]
    assert contiguous_run(list(alice.camera.sent), received)


async def test_leaving_releases_everything(meetings: Meetings) -> None:
    meeting = meetings()
    alice, bob = meeting.join("alice"), meeting.join("bob")
    await alice.publish()
    await bob.publish()
    await wait_for(
        lambda: bob.frames_from("alice", "camera") and alice.frames_from("bob", "camera")
    )
    assert meeting.router.stats().peer_connections == 4

    await bob.media.close()
    stats = meeting.router.stats()
    # Alice keeps her publish and receive connections.
    assert (stats.participants, stats.peer_connections, stats.published_tracks) == (1, 2, 2)
    assert stats.subscriptions == 0
    assert meeting.events[-1] == ParticipantMediaClosed("bob", "left")
    assert {e.track_id for e in meeting.events_of(TrackUnpublished)} == {
        "bob/camera",
        "bob/microphone",
    }
    # Alice's receive connection was renegotiated: bob's m-lines are inactive now.
    await wait_for(lambda: all(d == "inactive" for _, d in directions(alice.offers[-1]).values()))
    with pytest.raises(MediaError, match="closed"):
        await bob.media.publish("v=0", {})

    await alice.media.close()
    await bob.media.close()  # twice is fine
    assert released(meeting.router.stats())


async def test_peer_hanging_up_releases_everything(meetings: Meetings) -> None:
    meeting = meetings()
    alice, bob = meeting.join("alice"), meeting.join("bob")
    await alice.publish()
    await bob.publish()
    await wait_for(lambda: bob.frames_from("alice", "camera"))

    await bob.close()  # the browser tab closes: DTLS close_notify, RTCP BYE
    await wait_for(lambda: meeting.events_of(ParticipantMediaClosed))
    await wait_for(lambda: meeting.router.stats().tasks == 0)
    assert meeting.events_of(ParticipantMediaClosed) == [
        ParticipantMediaClosed("bob", "connection lost")
    ]
    stats = meeting.router.stats()
    assert (stats.participants, stats.peer_connections, stats.published_tracks) == (1, 2, 2)
    assert stats.subscriptions == 0


async def test_unresponsive_peer_is_detected_and_released(
    meetings: Meetings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Consent freshness (RFC 7675) notices the silence; shorten its timers (not the
    # 0.5 s a check waits for its answer, which a busy machine may need for the others).
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.1)
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 4)
    meeting = meetings()
    alice, bob = meeting.join("alice"), meeting.join("bob")
    # Audio only: the timers are short, so keep the process light for a busy machine.
    await alice.publish(camera=False)
    await bob.publish(camera=False)
    await wait_for(
        lambda: alice.frames_from("bob", "microphone") and bob.frames_from("alice", "microphone")
    )

    # Bob's machine hangs: it stops reading its sockets, so it answers nothing.
    for pc in (bob.publish_pc, bob.receive_pc):
        assert pc is not None
        for connection in aiortc_hooks.ice_connections(pc):
            for protocol in connection._protocols:
                protocol.transport.pause_reading()
    await wait_for(lambda: meeting.events_of(ParticipantMediaClosed))
    assert meeting.events_of(ParticipantMediaClosed) == [
        ParticipantMediaClosed("bob", "connection lost")
    ]
    await wait_for(lambda: meeting.router.stats().tasks == 0)
    stats = meeting.router.stats()
    assert (stats.participants, stats.peer_connections, stats.subscriptions) == (1, 2, 0)
    # Alice goes on, and hears about it by renegotiation.
    await wait_for(lambda: all(d == "inactive" for _, d in directions(alice.offers[-1]).values()))


async def test_screen_share_comes_and_goes_by_renegotiation(meetings: Meetings) -> None:
    meeting = meetings()
    alice, bob = meeting.join("alice"), meeting.join("bob")
    await alice.publish()
    await wait_for(lambda: bob.frames_from("alice", "camera"))
    offers = len(bob.offers)

    await alice.share_screen()
    await wait_for(lambda: len(bob.frames_from("alice", "screen")) >= 5)
    assert len(bob.offers) == offers + 1
    assert ("alice alice.screen", "sendonly") in directions(bob.offers[-1]).values()
    assert alice.screen is not None
    received = [f.data for f in bob.frames_from("alice", "screen")]
    assert contiguous_run(list(alice.screen.sent), received)
    assert (
        TrackPublished("alice", "alice/screen", "video", "screen", "video/VP8") in meeting.events
    )

    await alice.stop_screen()
    assert meeting.events[-1] == TrackUnpublished("alice", "alice/screen", "video", "screen")
    inactive = ("alice alice.screen", "inactive")
    await wait_for(lambda: inactive in directions(bob.offers[-1]).values())

    # Sharing again reuses the inactive m-line: the subscriber's SDP does not grow.
    await alice.share_screen()
    sending = ("alice alice.screen", "sendonly")
    await wait_for(lambda: sending in directions(bob.offers[-1]).values())
    assert len(directions(bob.offers[-1])) == 3
    count = len(bob.frames_from("alice", "screen"))
    await wait_for(lambda: len(bob.frames_from("alice", "screen")) > count + 5)


async def test_offers_are_serialized_per_subscriber(meetings: Meetings) -> None:
    meeting = meetings()
    alice, bob, carol = meeting.join("alice"), meeting.join("bob"), meeting.join("carol")
    bob.auto_answer = False
    await alice.publish()
    await wait_for(lambda: len(bob.offers) == 1)
    await carol.publish()  # two more tracks while bob's offer is outstanding
    await carol.share_screen()
    await asyncio.sleep(0.1)
    assert len(bob.offers) == 1
    assert len(directions(bob.offers[0])) == 2

    await bob.answer()  # one offer follows, covering all the changes
    await wait_for(lambda: len(bob.offers) == 2)
    await asyncio.sleep(0.1)
    assert len(bob.offers) == 2
    assert len(directions(bob.offers[1])) == 5
    await bob.answer()
    await wait_for(
        lambda: bob.frames_from("carol", "screen") and bob.frames_from("alice", "camera")
    )
    with pytest.raises(MediaError, match="no server offer waiting"):
        await bob.media.accept_answer(bob.receive_pc.localDescription.sdp)  # type: ignore[union-attr]


async def test_client_that_never_answers_is_released(meetings: Meetings) -> None:
    clock = FakeClock()
    meeting = meetings(clock=clock, settings=loopback_settings(answer_timeout=5))
    alice, bob = meeting.join("alice"), meeting.join("bob")
    bob.auto_answer = False
    await alice.publish(camera=False)
    await wait_for(lambda: bob.offers)
    clock.advance(4)
    assert meeting.router.participant("bob") is not None
    clock.advance(1)
    await wait_for(lambda: meeting.router.participant("bob") is None)
    assert ParticipantMediaClosed("bob", "no answer") in meeting.events


async def bad_inputs(client: Client, good_offer: str, sources: dict[str, str]) -> None:
    """Every one of these raises MediaError."""
    media = client.media
    no_fingerprint = "".join(
        line for line in good_offer.splitlines(True) if not line.startswith("a=fingerprint")
    )
    cases: list[tuple[Any, Any]] = [
        ("x" * 70_000, sources),
        ("\x00garbage\x00", sources),
        (no_fingerprint, sources),
        (good_offer.replace("VP8/90000", "VP9/90000").replace("H264", "AV1X"), sources),
        (good_offer, {"0": "camera", "1": "camera"}),  # wrong kind for audio
        (good_offer, {"1": "camera"}),  # unlabelled audio
        (good_offer, {"0": "microphone", "1": "hologram"}),
        (good_offer, {"0": "microphone", "1": "camera", "7": "screen"}),
        (good_offer, ["0", "1"]),
    ]
    for offer, labels in cases:
        with pytest.raises(MediaError):
            await media.publish(offer, labels)
    with pytest.raises(MediaError, match=r"no media connection|no server offer"):
        await media.accept_answer(good_offer)


async def test_bad_sdp_is_refused_and_the_others_carry_on(meetings: Meetings) -> None:
    meeting = meetings()
    alice, bob = meeting.join("alice"), meeting.join("bob")
    await alice.publish()
    await wait_for(lambda: bob.frames_from("alice", "camera"))
    mallory = meeting.join("mallory")
    await wait_for(lambda: mallory.frames_from("alice", "camera"))
    good_offer, sources = await mallory.publish_offer()

    before = len(bob.frames_from("alice", "camera"))
    await bad_inputs(mallory, good_offer, sources)
    with pytest.raises(MediaError, match="no server offer"):
        await mallory.media.accept_answer("v=0\r\n")
    with pytest.raises(MediaError, match="already has media"):
        meeting.router.add_participant("alice", mallory.on_offer)
    for bad_id in ("", "a b", "@mallory:example.org", "x" * 65):
        with pytest.raises(MediaError, match="participant id"):
            meeting.router.add_participant(bad_id, mallory.on_offer)

    # Nobody else noticed: bob still receives, nothing was published or closed.
    await wait_for(lambda: len(bob.frames_from("alice", "camera")) > before + 10)
    assert [e.participant_id for e in meeting.events_of(TrackPublished)] == ["alice", "alice"]
    assert meeting.events_of(ParticipantMediaClosed) == []
    stats = meeting.router.stats()
    assert (stats.participants, stats.published_tracks, stats.subscriptions) == (3, 2, 4)
    # And mallory can still publish properly afterwards.
    await mallory.publish()
    await wait_for(lambda: bob.frames_from("mallory", "camera"))


class Decoy(asyncio.DatagramProtocol):
    """A UDP socket on loopback that records what reaches it: an internal service."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.datagrams.append(data)


def naming(text: str, port: int) -> str:
    """``text`` with one more host candidate, 127.0.0.1:``port``, checked first."""
    description = sdp.SessionDescription.parse(text)
    for media in description.media:
        # The highest priority: a server that may use it checks it before the others.
        decoy = RTCIceCandidate(
            component=1,
            foundation="decoy",
            ip="127.0.0.1",
            port=port,
            priority=2**31 - 1,
            protocol="udp",
            type="host",
        )
        media.ice_candidates.insert(0, decoy)
    return str(description)


@pytest.mark.parametrize("allowed", [False, True], ids=["default", "allowed"])
async def test_private_addresses_an_sdp_names_are_probed_only_when_allowed(
    meetings: Meetings, monkeypatch: pytest.MonkeyPatch, allowed: bool
) -> None:
    meeting = meetings(settings=loopback_settings(allow_private_candidates=allowed))
    alice, bob = meeting.join("alice"), meeting.join("bob")
    await alice.publish()
    await wait_for(lambda: bob.frames_from("alice", "camera"))

    # Mallory's offer and answers name a loopback "service", besides her own candidates.
    loop = asyncio.get_running_loop()
    transport, decoy = await loop.create_datagram_endpoint(Decoy, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    mallory = meeting.join("mallory")
    publish, accept_answer = mallory.media.publish, mallory.media.accept_answer

    async def publish_naming(offer: str, sources: dict[str, str]) -> str:
        return await publish(naming(offer, port), sources)

    async def accept_answer_naming(answer: str) -> None:
        await accept_answer(naming(answer, port))

    monkeypatch.setattr(mallory.media, "publish", publish_naming)
    monkeypatch.setattr(mallory.media, "accept_answer", accept_answer_naming)
    before = len(bob.frames_from("alice", "camera"))
    try:
        await mallory.publish()
        # Both her connections work either way: with her candidates dropped, the server
        # learns her address from the checks she sends (peer-reflexive candidates).
        await wait_for(
            lambda: bob.frames_from("mallory", "camera") and mallory.frames_from("alice", "camera")
        )
        if allowed:
            await wait_for(lambda: decoy.datagrams)
            assert decoy.datagrams[0][:2] == b"\x00\x01"  # a STUN binding request
        else:
            await asyncio.sleep(1)  # the server checks top-priority pairs first
            assert decoy.datagrams == []
    finally:
        transport.close()
    # The others did not notice.
    await wait_for(lambda: len(bob.frames_from("alice", "camera")) > before + 10)
    assert meeting.events_of(ParticipantMediaClosed) == []


async def test_active_speaker_follows_who_talks(meetings: Meetings) -> None:
    meeting = meetings()
    alice, bob = meeting.join("alice"), meeting.join("bob")
    await alice.publish(camera=False, levels=True)
    await bob.publish(camera=False, levels=True)
    assert alice.microphone is not None and bob.microphone is not None
    alice.microphone.loud = True
    await wait_for(lambda: meeting.events_of(ActiveSpeaker))
    assert meeting.events_of(ActiveSpeaker) == [ActiveSpeaker("alice")]

    alice.microphone.loud, bob.microphone.loud = False, True
    await wait_for(lambda: len(meeting.events_of(ActiveSpeaker)) == 2)
    assert meeting.events_of(ActiveSpeaker)[-1] == ActiveSpeaker("bob")
    await asyncio.sleep(0.5)
    assert len(meeting.events_of(ActiveSpeaker)) == 2  # no flapping


async def test_router_close_releases_every_participant(meetings: Meetings) -> None:
    meeting = meetings()
    clients = [meeting.join(name) for name in ("alice", "bob", "carol")]
    for client in clients:
        await client.publish()
    await wait_for(lambda: all(len(c.received) == 4 for c in clients))
    assert meeting.router.stats().peer_connections == 6

    await meeting.router.close()
    assert released(meeting.router.stats())
    closed = meeting.events_of(ParticipantMediaClosed)
    assert sorted(e.participant_id for e in closed) == ["alice", "bob", "carol"]
    assert {e.reason for e in closed} == {"router closed"}
    with pytest.raises(MediaError, match="closed"):
        meeting.router.add_participant("dave", clients[0].on_offer)


async def test_two_routers_in_one_process_are_independent(meetings: Meetings) -> None:
    first, second = meetings(), meetings()
    alice, bob = first.join("alice"), first.join("bob")
    alice2, bob2 = second.join("alice"), second.join("bob")
    await alice.publish(microphone=False)
    await alice2.publish(microphone=False)
    await wait_for(
        lambda: bob.frames_from("alice", "camera") and bob2.frames_from("alice", "camera")
    )
    assert alice.camera is not None and alice2.camera is not None
    assert contiguous_run(
        list(alice.camera.sent), [f.data for f in bob.frames_from("alice", "camera")]
    )
    assert contiguous_run(
        list(alice2.camera.sent), [f.data for f in bob2.frames_from("alice", "camera")]
    )
    await first.router.close()
    count = len(bob2.frames_from("alice", "camera"))
    await wait_for(lambda: len(bob2.frames_from("alice", "camera")) > count + 5)


class RawVideoTrack(VideoStreamTrack):
    """Raw frames that aiortc itself encodes (here to H.264)."""

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = pattern_frame(160, 120, pts // 3000)
        frame.pts, frame.time_base = pts, time_base
        return frame


async def test_h264_is_forwarded_when_preferred(meetings: Meetings) -> None:
    meeting = meetings(settings=loopback_settings(video_codecs=["H264"]))
    alice, bob = meeting.join("alice"), meeting.join("bob")
    alice.publish_pc = new_peer_connection([])
    alice._add(RawVideoTrack(), "camera")
    await alice.renegotiate_publish()
    assert "H264/90000" in alice.publish_pc.remoteDescription.sdp
    assert "VP8" not in alice.publish_pc.remoteDescription.sdp

    await wait_for(lambda: len(bob.frames_from("alice", "camera")) >= 5)
    frames = bob.frames_from("alice", "camera")
    assert frames[0].keyframe and frames[0].data.startswith(b"\x00\x00\x00\x01")
    offered = sdp.SessionDescription.parse(bob.offers[-1]).media[0].rtp.codecs
    assert [c.mimeType for c in offered] == ["video/H264", "video/rtx"]


async def test_a_connection_that_never_connects_is_released(meetings: Meetings) -> None:
    clock = FakeClock()
    meeting = meetings(clock=clock, settings=loopback_settings(connect_timeout=20))
    alice, ghost = meeting.join("alice"), meeting.join("ghost")
    await alice.publish(camera=False)
    # The ghost offers from a connection that is closed at once: it never answers
    # the server's checks and sends none of its own.
    offer, sources = await ghost.publish_offer()
    await ghost.media.publish(offer, sources)
    # Alice receives the ghost's (silent) tracks on a connection that does connect.
    await wait_for(
        lambda: alice.receive_pc is not None and alice.receive_pc.connectionState == "connected"
    )
    clock.advance(19)
    assert meeting.router.participant("ghost") is not None
    clock.advance(1)
    await wait_for(lambda: meeting.events_of(ParticipantMediaClosed))
    closed = meeting.events_of(ParticipantMediaClosed)
    assert [(e.participant_id, e.reason) for e in closed] == [("ghost", "never connected")]
    assert meeting.router.participant("ghost") is None
    # A connection that did connect is not touched by its timer.
    assert meeting.router.participant("alice") is not None
