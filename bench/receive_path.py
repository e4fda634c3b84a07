"""Receive-path microbenchmark: CPU per incoming RTP packet of a published track.

    .venv/bin/python bench/receive_path.py [--seconds 10] [--rounds 5] [--sink]

Builds one publisher's video receiver the way ``bridge.media.publisher.Publisher`` wires
it (packet forwarding on, no subscriber), and feeds it the RTP packets of a VP8 640x360
30 fps clip of about 1 Mbit/s, already parsed, straight into the handler aiortc's DTLS
transport calls for each packet (``receiver._handle_rtp_packet``). What is timed is that
handler: statistics, RTX, NACKs, the fan-out to no forward, and frame assembly when
something wants frames. Not timed: what comes before the handler (the socket's callback,
SRTP unprotect, RTP parsing and, on aiortc's way, aioice's queue and the DTLS transport's
coroutines); ``bench/sfu.py --receivers 1`` shows the whole chain as CPU per packet.

``--sink`` adds one in-process frame consumer (as the recorder would be) to the track.
Prints the best and median µs per packet over ``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av
from aiortc import RTCRtpReceiver
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiveParameters,
    RTCRtpRtxParameters,
)
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from bridge.media import MediaSettings
from bridge.media.clock import LoopClock
from bridge.media.publisher import PublishedTrack, Publisher
from tests.harness.synthetic import encode_vp8_clip

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}
)
SSRC, RTX_SSRC = 1111, 2222
EXTENSIONS = [
    RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
    RTCRtpHeaderExtensionParameters(
        id=2, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
    ),
]


class FakeDtlsTransport:
    """What a started receiver asks of its transport, doing nothing."""

    state = "connected"
    _stats_id = "transport"

    def _register_rtp_receiver(self, receiver: Any, parameters: Any) -> None:
        pass

    def _unregister_rtp_receiver(self, receiver: Any) -> None:
        pass

    async def _send_rtp(self, data: bytes) -> None:
        pass


class Transceiver:
    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self.mid = "1"
        self.kind = "video"
        self.receiver = receiver


class FakePeerConnection:
    def __init__(self, transceiver: Transceiver) -> None:
        self._transceiver = transceiver

    def getTransceivers(self) -> list[Transceiver]:
        return [self._transceiver]


class Listener:
    def track_published(self, track: Any) -> None:
        pass

    def track_unpublished(self, track: Any) -> None:
        pass

    def audio_level(self, participant_id: str, level: int) -> None:
        pass

    def connection_lost(self, reason: str) -> None:
        pass


def rtp_packets(seconds: int) -> list[bytes]:
    """The clip's frames packetized as aiortc's sender does, with mid and abs-send-time."""
    clip = encode_vp8_clip(seconds=seconds)
    encoder = get_encoder(VP8)
    extensions = HeaderExtensionsMap()
    extensions.configure(RTCRtpReceiveParameters(headerExtensions=EXTENSIONS))
    out: list[bytes] = []
    seq = 0
    frames = (clip.keyframes[0], *clip.frames[1:])
    for index, frame in enumerate(frames):
        packet = av.Packet(frame)
        packet.pts = index * 3000
        packet.time_base = fractions.Fraction(1, 90000)
        payloads, timestamp = encoder.pack(packet)
        for i, payload in enumerate(payloads):
            rtp = RtpPacket(
                payload_type=96,
                sequence_number=seq & 0xFFFF,
                timestamp=timestamp,
                ssrc=SSRC,
                marker=int(i == len(payloads) - 1),
                payload=payload,
            )
            rtp.extensions.mid = "1"
            rtp.extensions.abs_send_time = (seq * 37) & 0xFFFFFF
            out.append(rtp.serialize(extensions))
            seq += 1
    return out


async def run(args: argparse.Namespace) -> None:
    datagrams = rtp_packets(args.seconds)
    extensions = HeaderExtensionsMap()
    extensions.configure(RTCRtpReceiveParameters(headerExtensions=EXTENSIONS))
    loop = asyncio.get_running_loop()
    settings = MediaSettings(packet_forwarding=True)
    results = []
    for _ in range(args.rounds):
        receiver = RTCRtpReceiver("video", FakeDtlsTransport())  # type: ignore[arg-type]
        receiver._track = RemoteStreamTrack("video")
        publisher = Publisher(
            "alice", settings, LoopClock(), loop.create_task, Listener(), logging.getLogger()
        )
        publisher._tap_new_receivers(FakePeerConnection(Transceiver(receiver)))  # type: ignore[arg-type]
        track = PublishedTrack(
            "alice", "camera", VP8, receiver, SSRC, settings, LoopClock(), loop.create_task
        )
        track.packet_source = True
        publisher._tracks["1"] = track
        await receiver.receive(
            RTCRtpReceiveParameters(
                codecs=[VP8, RTX],
                encodings=[
                    RTCRtpDecodingParameters(
                        ssrc=SSRC, payloadType=96, rtx=RTCRtpRtxParameters(RTX_SSRC)
                    )
                ],
                headerExtensions=EXTENSIONS,
                muxId="1",
            )
        )
        if args.sink:
            track.subscribe()
        packets = [RtpPacket.parse(d, extensions) for d in datagrams]
        handle = receiver._handle_rtp_packet
        arrival = 0
        start = time.process_time()
        for packet in packets:
            coroutine = handle(packet, arrival)
            try:
                coroutine.send(None)
            except StopIteration:
                pass
            else:  # it awaited something real: finish it on the loop
                await coroutine
            arrival += 8
        elapsed = time.process_time() - start
        results.append(elapsed / len(packets) * 1e6)
        await receiver.stop()
        track.close()
    print(
        f"{len(datagrams)} packets, {'one frame consumer' if args.sink else 'no frame consumer'}:"
        f" best {min(results):.1f} µs/packet, median {statistics.median(results):.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of the clip")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sink", action="store_true", help="one frame consumer")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
