"""Publishing the way LiveKit clients do: data channels first, tracks offered right after,
and ICE candidates trickled instead of put in the SDP."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiortc import RTCSessionDescription

from bridge.media.errors import MediaError
from bridge.media.peer import new_peer_connection, set_local_description
from tests.harness.livekit_client import strip_candidates
from tests.harness.synthetic import SyntheticVideoTrack

from .helpers import LOOPBACK, Meeting, loopback_settings, wait_for


async def test_tracks_offered_during_the_first_handshake_still_flow(
    meetings: Callable[..., Meeting],
) -> None:
    # livekit-client offers its data channels, then its tracks as soon as they are
    # published, often before the first DTLS handshake is done. aiortc alone never
    # starts the receivers of that second offer.
    meeting = meetings()
    client = meeting.join("PA_a")
    pc = client.publish_pc = new_peer_connection([])
    pc.createDataChannel("_reliable")
    await set_local_description(pc, await pc.createOffer(), LOOPBACK)
    answer = await client.media.publish(pc.localDescription.sdp, {}, data_channels=True)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    camera = SyntheticVideoTrack()
    transceiver = pc.addTransceiver(camera, direction="sendonly")
    await set_local_description(pc, await pc.createOffer(), LOOPBACK)
    assert transceiver.mid is not None
    answer = await client.media.publish(
        pc.localDescription.sdp, {transceiver.mid: "camera"}, data_channels=True
    )
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    published = client.media.publisher.tracks
    await wait_for(lambda: len(published) == 1 and published[0].frames > 10)


async def test_data_channels_are_refused_unless_the_door_takes_them(
    meetings: Callable[..., Meeting],
) -> None:
    client = meetings().join("p1")
    pc = client.publish_pc = new_peer_connection([])
    pc.createDataChannel("chat")
    await set_local_description(pc, await pc.createOffer(), LOOPBACK)
    with pytest.raises(MediaError, match="Data channels are not supported here"):
        await client.media.publish(pc.localDescription.sdp, {})


async def test_trickled_candidates_connect_an_offer_that_named_none(
    meetings: Callable[..., Meeting],
) -> None:
    meeting = meetings()
    client = meeting.join("PA_a")
    pc = client.publish_pc = new_peer_connection([])
    camera = SyntheticVideoTrack()
    transceiver = pc.addTransceiver(camera, direction="sendonly")
    await set_local_description(pc, await pc.createOffer(), LOOPBACK)
    offer, candidates = strip_candidates(pc.localDescription.sdp)
    assert candidates and "a=candidate" not in offer
    # A candidate may come before the offer it belongs to: it is kept until then.
    assert await client.media.add_candidate("publish", candidates[0]) is True
    assert transceiver.mid is not None
    answer = await client.media.publish(offer, {transceiver.mid: "camera"})
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    published = client.media.publisher.tracks
    await wait_for(lambda: len(published) == 1 and published[0].frames > 10)
    # The server's ICE agent knows the client's address from the trickle alone.
    assert any(
        c.port == int(candidates[0].split()[5])
        for c in client.media.publisher._pc.getTransceivers()[
            0
        ].receiver.transport.transport.getRemoteCandidates()  # type: ignore[union-attr]
    )


@pytest.mark.parametrize(
    "candidate",
    ["", "candidate:", "not a candidate at all", "candidate:1 1 udp x 127.0.0.1 9 typ host", 7],
)
async def test_a_bad_trickled_candidate_is_refused(
    meetings: Callable[..., Meeting], candidate: object
) -> None:
    client = meetings().join("p1")
    with pytest.raises(MediaError, match="candidate"):
        await client.media.add_candidate("publish", candidate)  # type: ignore[arg-type]


async def test_a_trickled_private_address_is_dropped_unless_allowed(
    meetings: Callable[..., Meeting],
) -> None:
    line = "candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host"
    strict = meetings(settings=loopback_settings(allow_private_candidates=False)).join("p1")
    assert await strict.media.add_candidate("receive", line) is False
    lenient = meetings().join("p2")
    assert await lenient.media.add_candidate("receive", line) is True
    with pytest.raises(MediaError, match="publish or the receive"):
        await lenient.media.add_candidate("sideways", line)  # type: ignore[arg-type]
