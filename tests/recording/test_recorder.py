"""The recorder with real encoded media (libvpx, libx264, libopus): what it writes is
exactly what was sent, on one timeline, readable by PyAV and by ffprobe; the mix puts
each speaker where they spoke; a writer that falls behind costs frames, never the
event loop or a decodable file; garbage and hostile names do no harm."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bridge.meeting.media import FrameHandler, MediaFrame, TrackPublished
from bridge.recording import RecordedFile, Recorder
from bridge.recording.h264 import nal_units
from bridge.recording.mix import Mix
from bridge.recording.names import create_file
from bridge.recording.track_file import TrackFile

from .media import (
    OPUS_FRAME,
    RATE,
    Encoded,
    decode_audio,
    demux,
    ffprobe,
    h264_frames,
    names_in,
    opus_packets,
    rms,
    silence,
    title_of,
    tone,
    vp8_frames,
)

START = 1000.0  # the fake clock's reading when the recording starts


class FakeClock:
    def __init__(self) -> None:
        self.time = START

    def __call__(self) -> float:
        return self.time


def recorder(directory: Path, names: dict[str, str] | None = None, **kwargs: object) -> Recorder:
    known = names or {}
    return Recorder(
        directory,
        name_of=lambda participant_id: known.get(participant_id, participant_id),
        clock=FakeClock(),
        **kwargs,  # type: ignore[arg-type]
    )


def published(participant_id: str, source: str, mime_type: str) -> TrackPublished:
    kind = "audio" if mime_type.startswith("audio") else "video"
    return TrackPublished(participant_id, f"{participant_id}/{source}", kind, source, mime_type)  # type: ignore[arg-type]


@dataclass
class Sent:
    """A track's frames as a publisher sends them, placed in time."""

    handler: FrameHandler
    frames: list[MediaFrame]


def video(handler: FrameHandler | None, frames: Iterable[Encoded], at: float) -> Sent:
    """Frames at 30 frames/s, the first arriving ``at`` seconds into the recording."""
    assert handler is not None
    made = [
        MediaFrame(f.data, n * 3000, f.keyframe, START + at + n / 30) for n, f in enumerate(frames)
    ]
    return Sent(handler, made)


def audio(handler: FrameHandler | None, packets: Iterable[bytes], at: float) -> Sent:
    """Packets every 20 ms, the first arriving ``at`` seconds into the recording."""
    assert handler is not None
    made = [
        MediaFrame(p, n * OPUS_FRAME, True, START + at + n * 0.02) for n, p in enumerate(packets)
    ]
    return Sent(handler, made)


def play(*tracks: Sent) -> None:
    """Hand every frame over in the order they arrive, as the router does."""
    merged = sorted(
        (
            (frame.arrival, i, n, track)
            for i, track in enumerate(tracks)
            for n, frame in enumerate(track.frames)
        ),
        key=lambda item: item[:3],
    )
    for _, _, n, track in merged:
        track.handler(track.frames[n])


def by_name(files: list[RecordedFile]) -> dict[str, RecordedFile]:
    return {f.path.name: f for f in files}


def recorder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("recorder ")]


async def test_tracks_are_stored_as_sent_on_one_timeline(tmp_path: Path) -> None:
    rec = recorder(tmp_path, {"alice": "Alice Martin", "bob": "Bob"})
    camera_frames = vp8_frames(45, 176, 144)
    voice = opus_packets(tone(1.0, 440))
    stereo = opus_packets(tone(0.6, 660), stereo=True)
    camera = video(
        rec.track_started(published("alice", "camera", "video/VP8")), camera_frames, 0.5
    )
    mic = audio(rec.track_started(published("alice", "microphone", "audio/opus")), voice, 0.25)
    bob = audio(rec.track_started(published("bob", "microphone", "audio/opus")), stereo, 1.5)
    play(camera, mic, bob)
    files = await rec.stop()

    named = by_name(files)
    assert sorted(named) == [
        "Alice_Martin-camera-1.webm",
        "Alice_Martin-microphone-1.webm",
        "Bob-microphone-1.webm",
        "mix.webm",
    ]
    cam = named["Alice_Martin-camera-1.webm"]
    assert (cam.kind, cam.participant_id, cam.name, cam.source, cam.mime_type) == (
        "track",
        "alice",
        "Alice Martin",
        "camera",
        "video/webm",
    )
    mix = named["mix.webm"]
    assert (mix.kind, mix.participant_id, mix.name, mix.source, mix.mime_type) == (
        "mix",
        None,
        "",
        None,
        "audio/webm",
    )
    for file in files:
        assert file.size == file.path.stat().st_size > 0

    # Video: every frame, byte for byte, in order, with its size and key frames.
    stored = demux(cam.path)
    assert (stored.codec, stored.width, stored.height) == ("vp8", 176, 144)
    assert stored.packets == [f.data for f in camera_frames]
    assert stored.keyframes == [f.keyframe for f in camera_frames]
    # On the recording's timeline: the first frame arrived 0.5 s in.
    assert stored.times[0] == pytest.approx(0.5, abs=0.002)
    assert stored.times[-1] == pytest.approx(0.5 + 44 / 30, abs=0.002)
    assert cam.start_ms == 500
    assert cam.duration_ms == pytest.approx(45 / 30 * 1000, abs=2)

    # Audio: every packet as sent, with an RFC 7845 identification header.
    for name, packets, channels, at in (
        ("Alice_Martin-microphone-1.webm", voice, 1, 0.25),
        ("Bob-microphone-1.webm", stereo, 2, 1.5),
    ):
        stored = demux(named[name].path)
        assert stored.codec == "opus"
        assert stored.packets == packets
        assert stored.extradata[:8] == b"OpusHead"
        assert stored.extradata[9] == channels
        assert stored.times[0] == pytest.approx(at, abs=0.001)
        assert named[name].duration_ms == len(packets) * 20
    assert not recorder_threads()


async def test_ffprobe_reads_every_file(tmp_path: Path) -> None:
    rec = recorder(tmp_path, {"alice": "Alice"})
    camera = video(
        rec.track_started(published("alice", "camera", "video/VP8")), vp8_frames(60), 1.0
    )
    mic = audio(
        rec.track_started(published("alice", "microphone", "audio/opus")),
        opus_packets(tone(2.0, 300)),
        0.5,
    )
    play(camera, mic)
    files = await rec.stop()
    assert len(files) == 3
    expected = {"video/webm": ("vp8", "video"), "audio/webm": ("opus", "audio")}
    for file in files:
        probed = ffprobe(file.path)
        (stream,) = probed["streams"]
        assert (stream["codec_name"], stream["codec_type"]) == expected[file.mime_type]
        if stream["codec_type"] == "video":
            assert (stream["width"], stream["height"]) == (176, 144)
        assert "webm" in probed["format"]["format_name"]
        # Matroska's duration runs from the timeline's origin; the file starts later.
        start = float(probed["format"]["start_time"])
        end = float(probed["format"]["duration"])
        assert start == pytest.approx(file.start_ms / 1000, abs=0.01)
        assert end - start == pytest.approx(file.duration_ms / 1000, abs=0.04)


@pytest.mark.parametrize("profile", ["baseline", "high"])
async def test_h264_is_stored_in_matroska_with_its_size(tmp_path: Path, profile: str) -> None:
    sent = h264_frames(24, 322, 182, profile)  # cropped: 322x182 is no multiple of 16
    rec = recorder(tmp_path, {"carol": "Carol"})
    play(video(rec.track_started(published("carol", "screen", "video/H264")), sent, 0.0))
    (file,) = await rec.stop()
    assert (file.path.name, file.mime_type) == ("Carol-screen-1.mkv", "video/x-matroska")
    stored = demux(file.path)
    assert (stored.codec, stored.width, stored.height) == ("h264", 322, 182)
    assert stored.extradata[0] == 1  # an avcC record, made from the parameter sets
    # Matroska stores NAL units length-prefixed; the units themselves are as sent.
    assert [_units_of_avcc(p) for p in stored.packets] == [nal_units(f.data) for f in sent]
    probed = ffprobe(file.path)
    (stream,) = probed["streams"]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 322, 182)
    assert "matroska" in probed["format"]["format_name"]


def _units_of_avcc(data: bytes) -> list[bytes]:
    units, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        units.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return units


async def test_the_mix_puts_each_speaker_where_they_spoke(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    # Alice speaks from 0.5 s to 1.5 s and is silent until 2.5 s; Bob, who joins at
    # 3 s, speaks until 4 s. Their packets start at their own timestamp zero.
    alice = opus_packets(np.concatenate([tone(1.0, 440), silence(1.0)]))
    bob = opus_packets(tone(1.0, 660))
    play(
        audio(rec.track_started(published("alice", "microphone", "audio/opus")), alice, 0.5),
        audio(rec.track_started(published("bob", "microphone", "audio/opus")), bob, 3.0),
    )
    files = by_name(await rec.stop())
    mix = files["mix.webm"]
    assert mix.start_ms == pytest.approx(500, abs=20)
    assert mix.duration_ms == pytest.approx(3500, abs=60)

    start, samples = decode_audio(mix.path)

    def level(begin: float, end: float) -> float:
        return rms(samples[round((begin - start) * RATE) : round((end - start) * RATE)])

    speaking = 0.3 / 2**0.5  # the tones' RMS
    assert level(0.6, 1.4) == pytest.approx(speaking, rel=0.25)
    assert level(3.1, 3.9) == pytest.approx(speaking, rel=0.25)
    assert level(1.7, 2.8) < 0.003
    assert level(4.2, 4.4) < 0.003
    # And the tracks' own files have them alone.
    assert demux(files["alice-microphone-1.webm"].path).packets == alice
    assert demux(files["bob-microphone-1.webm"].path).packets == bob


class Gate:
    """Holds the writer thread inside its first file write until opened."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.timed_out = False
        write = TrackFile.write

        def held_write(file: TrackFile, data: bytes, position: int, keyframe: bool) -> bool:
            if not self.opened.is_set():
                self.entered.set()
                self.timed_out = not self.opened.wait(timeout=30)
            return write(file, data, position, keyframe)

        monkeypatch.setattr(TrackFile, "write", held_write)

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 30)

    def close(self) -> None:
        self.entered.clear()
        self.opened.clear()


async def drained(rec: Recorder) -> None:
    """Wait until the writer took everything queued."""
    for _ in range(3000):
        if not len(rec._inbox):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the writer does not drain its queue")


async def hand_over(rec: Recorder, handler: FrameHandler, frames: list[MediaFrame]) -> None:
    """Hand frames over no faster than the writer takes them (a tiny queue is not
    meant to overflow here)."""
    for frame in frames:
        await drained(rec)
        handler(frame)


async def test_a_writer_that_falls_behind_drops_frames_and_video_resumes_at_a_keyframe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "visio.recording")
    gate = Gate(monkeypatch)
    rec = recorder(tmp_path, {"alice": "Alice"}, queue_frames=4)
    sent = video(rec.track_started(published("alice", "camera", "video/VP8")), vp8_frames(60), 0.0)
    frames = sent.frames
    assert [n for n, f in enumerate(frames) if f.keyframe] == [0, 10, 20, 30, 40, 50]

    sent.handler(frames[0])
    await gate.wait_entered()  # the writer is stuck in the disk from now on
    for frame in frames[1:15]:
        sent.handler(frame)  # returns at once: 1-4 queued, 5-14 dropped (10 is a key
        # frame, but the queue is still full)
    assert rec.dropped == 10
    gate.opened.set()
    await hand_over(rec, sent.handler, frames[15:25])  # 15-19 skipped up to key frame 20
    assert rec.dropped == 15
    await drained(rec)

    # A second episode: one more log line, and the track skips to key frame 40.
    gate.close()
    sent.handler(frames[25])
    await gate.wait_entered()
    for frame in frames[26:35]:
        sent.handler(frame)  # 26-29 queued, 30-34 dropped
    gate.opened.set()
    await hand_over(rec, sent.handler, frames[35:])  # 35-39 skipped
    (file,) = await rec.stop()

    assert not gate.timed_out  # the event loop never waited for the writer
    assert rec.dropped == 10 + 5 + 5 + 5
    kept = [*range(0, 5), *range(20, 30), *range(40, 60)]
    stored = demux(file.path)
    assert stored.packets == [frames[n].data for n in kept]
    assert stored.keyframes[0] and stored.keyframes[5] and stored.keyframes[15]
    warnings = [r for r in caplog.records if "fell behind" in r.getMessage()]
    assert len(warnings) == 2
    assert ffprobe(file.path)["streams"][0]["codec_name"] == "vp8"


async def test_audio_drops_only_what_did_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch)
    rec = recorder(tmp_path, queue_frames=3)
    packets = opus_packets(tone(0.4, 500))
    sent = audio(rec.track_started(published("bob", "microphone", "audio/opus")), packets, 0.0)
    sent.handler(sent.frames[0])
    await gate.wait_entered()
    for frame in sent.frames[1:8]:
        sent.handler(frame)  # 1-3 queued, 4-7 dropped
    gate.opened.set()
    await hand_over(rec, sent.handler, sent.frames[8:])
    files = by_name(await rec.stop())
    assert rec.dropped == 4
    kept = [*packets[:4], *packets[8:]]
    assert demux(files["bob-microphone-1.webm"].path).packets == kept


async def test_garbage_is_left_out_and_breaks_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "visio.recording")
    rec = recorder(tmp_path, {"eve": "Eve", "bob": "Bob"})
    good_video = vp8_frames(30)
    # Not VP8: nothing, a lone byte, a key frame without its start code, a key frame
    # of size 0x0, an unknown version, a first partition larger than the frame.
    bad_video = [
        Encoded(b"", False),
        Encoded(b"\x01", False),
        Encoded(b"\x00\x00\x00garbage-garbage", True),
        Encoded(b"\x50\x00\x00\x9d\x01\x2a\x00\x00\x00\x00", True),
        Encoded(b"\x0f\x00\x00" + bytes(20), False),
        Encoded(b"\xf1\xff\xff" + bytes(20), False),
    ]
    # The garbage comes first (before any key frame), then between real frames.
    mixed_video = [*bad_video, *good_video[:10], *bad_video, *good_video[10:]]
    good_audio = opus_packets(tone(0.6, 440))
    # Not Opus (RFC 6716 §3.4): empty; code 1 with an odd length; code 2 with a first
    # frame longer than the packet; code 3 with no frame count, with 0 frames, and
    # with more than 120 ms.
    bad_audio = [
        b"",
        b"\x01\x00\x00\x00",
        b"\x02\xfa" + bytes(10),
        b"\x03",
        b"\x03\x00",
        b"\xfb\x3f",
    ]
    mixed_audio = [*good_audio[:10], *bad_audio, *good_audio[10:]]
    clean = opus_packets(tone(0.6, 880))
    eve_camera = rec.track_started(published("eve", "camera", "video/VP8"))
    eve_mic = rec.track_started(published("eve", "microphone", "audio/opus"))
    assert eve_camera is not None and eve_mic is not None
    play(
        Sent(
            eve_camera,
            [
                MediaFrame(f.data, n * 3000, f.keyframe, START + n / 30)
                for n, f in enumerate(mixed_video)
            ],
        ),
        Sent(
            eve_mic,
            [MediaFrame(p, n * 960, True, START + n * 0.02) for n, p in enumerate(mixed_audio)],
        ),
        audio(rec.track_started(published("bob", "microphone", "audio/opus")), clean, 0.0),
    )
    files = by_name(await rec.stop())
    assert sorted(files) == [
        "Bob-microphone-1.webm",
        "Eve-camera-1.webm",
        "Eve-microphone-1.webm",
        "mix.webm",
    ]
    assert demux(files["Eve-camera-1.webm"].path).packets == [f.data for f in good_video]
    assert demux(files["Eve-microphone-1.webm"].path).packets == good_audio
    assert demux(files["Bob-microphone-1.webm"].path).packets == clean
    for file in files.values():
        ffprobe(file.path)
    _, mixed = decode_audio(files["mix.webm"].path)
    assert rms(mixed) > 0.1
    complaints = [
        r.getMessage()
        for r in caplog.records
        if "not vp8" in r.getMessage() or "not opus" in r.getMessage()
    ]
    # One line when garbage first comes, one with the count when the track ends.
    assert sorted(complaints) == [
        "eve/camera: 12 frame(s) were not vp8: left out",
        "eve/camera: left out a frame that is not vp8",
        "eve/microphone: 6 frame(s) were not opus: left out",
        "eve/microphone: left out a frame that is not opus",
    ]


async def test_a_track_whose_file_fails_leaves_the_others_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = TrackFile.write

    def failing(file: TrackFile, data: bytes, position: int, keyframe: bool) -> bool:
        if file.path is not None and file.path.name.startswith("Eve"):
            raise OSError(28, "No space left on device")
        return write(file, data, position, keyframe)

    monkeypatch.setattr(TrackFile, "write", failing)
    rec = recorder(tmp_path, {"eve": "Eve", "bob": "Bob"})
    packets = opus_packets(tone(0.4, 440))
    play(
        audio(rec.track_started(published("eve", "microphone", "audio/opus")), packets, 0.0),
        audio(rec.track_started(published("bob", "microphone", "audio/opus")), packets, 0.1),
    )
    files = by_name(await rec.stop())
    # Eve's disk filled after her first frame: her file keeps what was written.
    assert sorted(files) == ["Bob-microphone-1.webm", "Eve-microphone-1.webm", "mix.webm"]
    assert demux(files["Eve-microphone-1.webm"].path).packets == packets[:1]
    assert demux(files["Bob-microphone-1.webm"].path).packets == packets


async def test_a_mix_that_cannot_be_written_leaves_the_tracks_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def failing_open(mix: Mix) -> None:
        mix._path = create_file(tmp_path, "mix", ".webm", numbered=False)
        raise OSError(28, "No space left on device")

    # The mix's file is created, then its container cannot be written.
    monkeypatch.setattr(Mix, "_open", failing_open)
    rec = recorder(tmp_path)
    packets = opus_packets(tone(3.0, 440))
    play(audio(rec.track_started(published("bob", "microphone", "audio/opus")), packets, 0.0))
    files = by_name(await rec.stop())
    assert sorted(files) == ["bob-microphone-1.webm"]
    assert names_in(tmp_path) == ["bob-microphone-1.webm"]
    assert demux(files["bob-microphone-1.webm"].path).packets == packets
    assert caplog.text.count("could not create the mix") == 1


@pytest.mark.parametrize(
    "display_name",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "..",
        ".hidden",
        "",
        "x" * 1000,
        "é" * 400,
        "Eve\x00\x1b[31m\n\r\tEvil\x7f",
        "\u202egnp.exe",  # right-to-left override
        "C:\\Windows\\System32",
        "con",
    ],
)
async def test_hostile_display_names_stay_inside_the_folder(
    tmp_path: Path, display_name: str
) -> None:
    folder = tmp_path / "recording"
    folder.mkdir()
    rec = recorder(folder, {"eve": display_name})
    play(
        video(rec.track_started(published("eve", "camera", "video/VP8")), vp8_frames(3), 0.0),
        audio(
            rec.track_started(published("eve", "microphone", "audio/opus")),
            opus_packets(tone(0.1, 440)),
            0.0,
        ),
    )
    files = await rec.stop()
    assert len(files) == 3
    written = [folder / name for name in names_in(folder)]
    assert sorted(f.path for f in files) == written
    assert names_in(tmp_path) == ["recording"]
    for path in written:
        assert path.resolve().parent == folder.resolve()
        assert not path.name.startswith(".")
        assert len(path.name.encode()) <= 120
        assert all(c.isprintable() and c not in "/\\:" for c in path.name)
    assert {f.name for f in files if f.kind == "track"} == {display_name}
    for file in files:
        assert title_of(file.path).isprintable()


async def test_each_track_instance_gets_its_own_file(tmp_path: Path) -> None:
    rec = recorder(tmp_path, {"alice": "Alice", "alice2": "Alice"})
    camera = published("alice", "camera", "video/VP8")
    play(video(rec.track_started(camera), vp8_frames(5), 0.0))
    rec.track_ended(camera.track_id)
    # The camera again, and another participant of the same name.
    play(
        video(rec.track_started(camera), vp8_frames(5), 1.0),
        video(rec.track_started(published("alice2", "camera", "video/VP8")), vp8_frames(5), 1.0),
    )
    # Started again without an end in between (a lost end): the old file is finished.
    play(video(rec.track_started(camera), vp8_frames(5), 2.0))
    files = await rec.stop()
    assert sorted(f.path.name for f in files) == [
        "Alice-camera-1.webm",
        "Alice-camera-2.webm",
        "Alice-camera-3.webm",
        "Alice-camera-4.webm",
    ]
    assert sorted((f.participant_id or "", f.start_ms) for f in files) == [
        ("alice", 0),
        ("alice", 1000),
        ("alice", 2000),
        ("alice2", 1000),
    ]


async def test_a_track_ends_into_a_finished_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished = threading.Event()
    finish = TrackFile.finish

    def finishing(file: TrackFile) -> RecordedFile | None:
        recorded = finish(file)
        finished.set()
        return recorded

    monkeypatch.setattr(TrackFile, "finish", finishing)
    rec = recorder(tmp_path)
    mic = published("bob", "microphone", "audio/opus")
    packets = opus_packets(tone(0.3, 440))
    play(audio(rec.track_started(mic), packets, 0.0))
    rec.track_ended(mic.track_id)
    assert await asyncio.to_thread(finished.wait, 30)
    # The file is complete on disk before the recording stops.
    assert demux(tmp_path / "bob-microphone-1.webm").packets == packets
    await rec.stop()


async def test_tracks_that_sent_nothing_leave_nothing(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    rec.track_started(published("alice", "camera", "video/VP8"))
    only_garbage = rec.track_started(published("bob", "microphone", "audio/opus"))
    assert only_garbage is not None
    only_garbage(MediaFrame(b"", 0, True, START))
    # Video that never reaches a key frame.
    late = video(
        rec.track_started(published("carol", "camera", "video/VP8")), vp8_frames(10)[1:], 0.0
    )
    play(late)
    assert await rec.stop() == []
    assert names_in(tmp_path) == []


async def test_stop_is_idempotent_and_ends_everything(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    handler = rec.track_started(published("bob", "microphone", "audio/opus"))
    sent = audio(handler, opus_packets(tone(0.2, 440)), 0.0)
    play(sent)
    first, again = await asyncio.gather(rec.stop(), rec.stop())
    assert first == again == await rec.stop()
    assert len(first) == 2
    assert not recorder_threads()
    # Nothing more is taken.
    sent.handler(sent.frames[0])
    assert rec.track_started(published("eve", "camera", "video/VP8")) is None
    rec.track_ended("bob/microphone")
    assert await rec.stop() == first


async def test_a_caller_giving_up_on_stop_does_not_cancel_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch)
    rec = recorder(tmp_path)
    play(
        audio(
            rec.track_started(published("bob", "microphone", "audio/opus")),
            opus_packets(tone(0.2, 440)),
            0.0,
        )
    )
    await gate.wait_entered()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await rec.stop()
    gate.opened.set()
    assert len(await rec.stop()) == 2


async def test_codecs_it_does_not_store_are_not_taken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "visio.recording")
    rec = recorder(tmp_path)
    assert rec.track_started(published("alice", "camera", "video/VP9")) is None
    assert rec.track_started(published("alice", "microphone", "audio/PCMU")) is None
    assert "video/VP9" in caplog.text
    await rec.stop()


async def test_a_display_name_that_fails_falls_back_to_the_id(tmp_path: Path) -> None:
    def name_of(participant_id: str) -> str:
        raise KeyError(participant_id)

    rec = Recorder(tmp_path, name_of=name_of, clock=FakeClock())
    play(video(rec.track_started(published("alice", "camera", "video/VP8")), vp8_frames(2), 0.0))
    (file,) = await rec.stop()
    assert (file.path.name, file.name) == ("alice-camera-1.webm", "alice")


async def test_timestamps_that_jump_are_placed_by_arrival(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    handler = rec.track_started(published("bob", "microphone", "audio/opus"))
    assert handler is not None
    packets = opus_packets(tone(0.4, 440))
    # Half the packets, then the sender's clock leaps ~12 hours ahead.
    frames = [MediaFrame(p, n * 960, True, START + n * 0.02) for n, p in enumerate(packets)]
    leap = 2**31
    frames = [
        f if n < 10 else MediaFrame(f.data, f.timestamp + leap, True, f.arrival)
        for n, f in enumerate(frames)
    ]
    play(Sent(handler, frames))
    files = by_name(await rec.stop())
    stored = demux(files["bob-microphone-1.webm"].path)
    assert stored.packets == packets
    assert stored.times[-1] == pytest.approx((len(packets) - 1) * 0.02, abs=0.002)
    assert files["mix.webm"].duration_ms < 1000
