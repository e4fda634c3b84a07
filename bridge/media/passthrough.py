"""Encoded passthrough of frames: media is forwarded as the publisher encoded it, never
decoded. Subscribers of a local publisher's tracks get packets instead
(:mod:`bridge.media.rtp_forward`); frames serve trunks, tracks that came over a trunk, and
in-process listeners. On the packet path a local publisher's frames are assembled from
its packets by the track itself, only while one of those wants them
(``aiortc_hooks.FrameAssembler``); this tap serves the frame path and trunks.

Receive side: :func:`tap_encoded_frames` takes each complete encoded frame where it leaves
an aiortc receiver's jitter buffer (see :mod:`bridge.media.aiortc_hooks`); the receiver
never decodes and its decoder thread ends as soon as it starts.

Send side: :class:`ForwardedTrack` hands ``av.Packet`` objects to an aiortc
``RTCRtpSender``, which packs anything that is not an ``av.Frame`` with the codec's
``pack()`` (VP8, H.264, Opus). Each subscriber thus gets its own SSRC, sequence numbers,
RTP timestamps and NACK/RTX history, and the encoder is never run.
"""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Callable

import av
from aiortc import MediaStreamTrack, RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from . import aiortc_hooks
from .frames import EncodedFrame, is_keyframe
from .subscription import Subscription, SubscriptionClosed


def tap_encoded_frames(receiver: RTCRtpReceiver, on_frame: Callable[[EncodedFrame], None]) -> None:
    """Deliver ``receiver``'s frames, still encoded, to ``on_frame`` (on the event loop).

    Must be called before the receiver starts (right after ``setRemoteDescription``).
    """

    def on_jitter_frame(codec: RTCRtpCodecParameters, frame: JitterFrame) -> None:
        on_frame(EncodedFrame(frame.data, frame.timestamp, is_keyframe(codec.name, frame.data)))

    aiortc_hooks.tap_receiver(receiver, on_jitter_frame)


# A plausible frame duration, used to join two sources' timestamps on one track.
_FRAME_TICKS = {"audio": 960, "video": 3000}
_CLOCK_RATES = {"audio": 48000, "video": 90000}


class ForwardedTrack(MediaStreamTrack):
    """The track of one subscriber's sender: it plays whichever subscription is attached.

    One ``ForwardedTrack`` lives as long as its transceiver (m-line) and is reused when
    another published track of the same kind and codec takes that m-line over. With no
    subscription attached, ``recv()`` waits without polling. RTP timestamps continue
    across a change of source, so the subscriber sees no jump backwards.
    """

    def __init__(self, kind: str, track_id: str) -> None:
        super().__init__()
        assert kind in _CLOCK_RATES
        self.kind = kind
        self._id = track_id
        self._time_base = fractions.Fraction(1, _CLOCK_RATES[kind])
        self._subscription: Subscription | None = None
        self._attached = asyncio.Event()
        self._offset: int | None = None
        self._last_timestamp: int | None = None

    @property
    def subscription(self) -> Subscription | None:
        return self._subscription

    def attach(self, subscription: Subscription, track_id: str) -> None:
        """Play ``subscription`` from now on, under the new ``track_id``."""
        self._subscription = subscription
        self._id = track_id
        self._offset = None
        self._attached.set()

    def detach(self) -> None:
        """Stop playing the current subscription (the caller closes it)."""
        self._subscription = None
        self._attached.clear()

    def stop(self) -> None:
        super().stop()
        # Wake a recv() that waits for a subscription so that it ends.
        self._attached.set()
        if self._subscription is not None:
            self._subscription.close()

    async def recv(self) -> av.Packet:
        """The next encoded frame, as a packet for the sender to pack into RTP."""
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            subscription = self._subscription
            if subscription is None:
                await self._attached.wait()
                continue
            try:
                frame = await subscription.get()
            except SubscriptionClosed:
                if self._subscription is subscription:
                    self.detach()
                continue
            return self._packet(frame)

    def _packet(self, frame: EncodedFrame) -> av.Packet:
        if self._offset is None:
            if self._last_timestamp is None:
                self._offset = 0
            else:
                restart = self._last_timestamp + _FRAME_TICKS[self.kind]
                self._offset = restart - frame.timestamp
        timestamp = frame.timestamp + self._offset
        self._last_timestamp = timestamp
        packet = av.Packet(frame.data)
        packet.pts = timestamp
        packet.time_base = self._time_base
        return packet
