"""The hooks into aiortc/aioice internals, checked on real peer connections."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import aioice.ice
import pytest
from aiortc import RTCIceServer, RTCPeerConnection

from bridge.media import aiortc_hooks
from bridge.media.frames import EncodedFrame
from bridge.media.passthrough import tap_encoded_frames
from bridge.media.peer import close_peer_connection, new_peer_connection, set_local_description
from tests.harness.synthetic import SyntheticVideoTrack, ToneTrack

from .helpers import LOOPBACK, wait_for


def test_other_versions_are_refused_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(aiortc_hooks.VERIFIED_VERSIONS, "aiortc", ("0.0.1",))
    with pytest.raises(RuntimeError, match=r"aiortc 0\.0\.1, but aiortc 1\.16\.0 is installed"):
        aiortc_hooks._check_versions()


async def test_host_candidates_on_configured_addresses_only() -> None:
    # Why the hook exists: aioice itself never offers loopback.
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)
    pc = new_peer_connection([])
    pc.addTransceiver("audio")
    pc.addTransceiver("video")
    await set_local_description(pc, await pc.createOffer(), LOOPBACK)
    candidates = [line for line in pc.localDescription.sdp.splitlines() if "a=candidate" in line]
    assert len(candidates) == 2  # one bundled transport, listed in both sections
    assert all(" 127.0.0.1 " in line and "typ host" in line for line in candidates)
    assert len(aiortc_hooks.ice_connections(pc)) == 1
    await pc.close()


async def test_an_unanswering_stun_server_delays_gathering_only_as_long_as_allowed() -> None:
    # The cause of the 5 s join stall: aioice waits 5 s for server-reflexive candidates.
    pc = new_peer_connection([RTCIceServer("stun:127.0.0.1:9")])  # nobody answers there
    pc.addTransceiver("video")
    started = time.monotonic()
    await set_local_description(pc, await pc.createOffer(), LOOPBACK, gathering_timeout=0.3)
    assert 0.25 < time.monotonic() - started < 1.5
    assert "typ srflx" not in pc.localDescription.sdp
    assert " 127.0.0.1 " in pc.localDescription.sdp
    await close_peer_connection(pc)


async def connect(
    sender: RTCPeerConnection, receiver: RTCPeerConnection, before_answer: Callable[[], None]
) -> None:
    await set_local_description(sender, await sender.createOffer(), LOOPBACK)
    await receiver.setRemoteDescription(sender.localDescription)
    before_answer()
    await set_local_description(receiver, await receiver.createAnswer(), LOOPBACK)
    await sender.setRemoteDescription(receiver.localDescription)


async def test_hooks_on_a_real_connection() -> None:
    sending, receiving = new_peer_connection([]), new_peer_connection([])
    video, audio = SyntheticVideoTrack(), ToneTrack(loud=True)
    video_sender = sending.addTransceiver(video, direction="sendonly").sender
    sending.addTransceiver(audio, direction="sendonly")
    pli_seen: list[int] = []
    aiortc_hooks.on_keyframe_request(video_sender, lambda: pli_seen.append(1))
    aiortc_hooks.set_msid(video_sender, "alice", "camera")
    frames: list[EncodedFrame] = []
    levels: list[int] = []

    def tap() -> None:
        video_rx, audio_rx = (t.receiver for t in receiving.getTransceivers())
        tap_encoded_frames(video_rx, frames.append)
        tap_encoded_frames(audio_rx, lambda frame: None)
        aiortc_hooks.observe_rtp(
            audio_rx,
            lambda p: (
                levels.append(p.extensions.audio_level[1]) if p.extensions.audio_level else None
            ),
        )

    await connect(sending, receiving, tap)
    assert "a=msid:alice camera" in sending.localDescription.sdp
    await wait_for(lambda: len(frames) >= 10 and len(levels) >= 10)

    # Frames arrive encoded and unchanged, and nothing decodes them.
    sent = list(video.sent)
    first = sent.index(frames[0].data)
    assert [f.data for f in frames] == sent[first : first + len(frames)]
    assert frames[0].keyframe
    decoders = [t.name for t in threading.enumerate() if "decoder" in t.name]
    assert decoders == []

    # RFC 6464 levels of the tone (aiortc encodes raw audio and adds them).
    assert max(levels) < 30

    # A PLI from the receiving side reaches the sender's hook.
    video_rx = receiving.getTransceivers()[0].receiver
    ssrc = video_sender._ssrc
    await aiortc_hooks.send_pli(video_rx, ssrc)
    await wait_for(lambda: pli_seen)

    with pytest.raises(RuntimeError, match="before the receiver starts"):
        aiortc_hooks.tap_receiver(video_rx, lambda codec, frame: None)
    await sending.close()
    await receiving.close()


async def test_tap_survives_receiver_stop_without_a_thread() -> None:
    frames: list[EncodedFrame] = []
    sending, receiving = new_peer_connection([]), new_peer_connection([])
    sending.addTransceiver(SyntheticVideoTrack(), direction="sendonly")
    await connect(
        sending,
        receiving,
        lambda: tap_encoded_frames(receiving.getTransceivers()[0].receiver, frames.append),
    )
    await wait_for(lambda: frames)
    await receiving.close()
    await sending.close()
    await asyncio.sleep(0.05)
    assert [t.name for t in threading.enumerate() if "decoder" in t.name] == []
