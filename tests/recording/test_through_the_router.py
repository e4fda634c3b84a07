"""The recorder attached to a real router with real aiortc peers: what a publisher
sends ends up in the files unchanged, video from a key frame."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from bridge.recording import Recorder
from tests.media.helpers import Meeting, opus_loop, wait_for
from tests.media.test_router import contiguous_run

from .media import decode_audio, demux, ffprobe, rms


async def test_a_meeting_is_recorded_as_sent(
    meetings: Callable[..., Meeting], tmp_path: Path
) -> None:
    meeting = meetings()
    alice = meeting.join("alice")
    recorder = Recorder(tmp_path, name_of={"alice": "Alice"}.__getitem__)
    meeting.router.add_sink(recorder)
    await alice.publish()
    assert alice.camera is not None
    await wait_for(lambda: len(alice.camera.sent) >= 60 if alice.camera else False)
    await asyncio.sleep(0.3)  # the last frames sent reach the router
    meeting.router.remove_sink(recorder)
    files = {f.path.name: f for f in await recorder.stop()}
    assert sorted(files) == ["Alice-camera-1.webm", "Alice-microphone-1.webm", "mix.webm"]
    assert recorder.dropped == 0

    camera = demux(files["Alice-camera-1.webm"].path)
    assert camera.codec == "vp8" and camera.keyframes[0]
    assert len(camera.packets) >= 30
    assert contiguous_run(list(alice.camera.sent), camera.packets)

    microphone = demux(files["Alice-microphone-1.webm"].path)
    loop = list(opus_loop()) * 100
    assert len(microphone.packets) >= 50
    assert contiguous_run(loop, microphone.packets)
    # Packets every 20 ms on the timeline: the RTP timestamps made it through.
    steps = {round(b - a, 3) for a, b in zip(microphone.times, microphone.times[1:], strict=False)}
    assert steps == {0.02}

    _, mixed = decode_audio(files["mix.webm"].path)
    assert rms(mixed) > 0.01
    for file in files.values():
        ffprobe(file.path)
