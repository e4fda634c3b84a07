"""One track's Opus packets decoded to what the engines and the VAD take: 16 kHz mono
float32.

The SFU forwards Opus without decoding it; the transcriber is the one place where a
speaker's audio is decoded, with FFmpeg's libopus decoder through PyAV (already there for
aiortc), downmixed and resampled by PyAV's resampler.
"""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt

#: The rate the VAD and the engines work at.
SAMPLE_RATE = 16000
#: Opus' RTP clock (MediaFrame timestamps), in ticks per second.
OPUS_CLOCK = 48000


class OpusDecoder:
    """Decodes one track's Opus packets, in order, to 16 kHz mono float32 samples."""

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("libopus", "r")
        self._codec.sample_rate = OPUS_CLOCK
        # WebRTC signals Opus as stereo; a microphone is mono, and the decoder downmixes.
        self._codec.layout = "mono"
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    def decode(self, packet: bytes) -> npt.NDArray[np.float32]:
        """The samples of one packet (empty for a packet the decoder rejects: a sender's
        bad packet is a moment of silence, not an error)."""
        try:
            frames = self._codec.decode(av.Packet(packet))
        except av.FFmpegError:
            return np.zeros(0, dtype=np.float32)
        pieces = [
            resampled.to_ndarray()[0]
            for frame in frames
            for resampled in self._resampler.resample(frame)
        ]
        if not pieces:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(pieces).astype(np.float32, copy=False)
