"""The recorder's parts on their own: safe file names, the timeline, the inbox and the
mix's arithmetic (summing with clipping, waiting for late tracks, bounded memory)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from bridge.recording import mix as mix_module
from bridge.recording.inbox import Inbox
from bridge.recording.mix import BLOCK, Mix
from bridge.recording.names import MAX_NAME_BYTES, create_file, printable, safe_name
from bridge.recording.timeline import RESYNC_SECONDS, TrackTimeline

from .media import opus_packets, tone

log = logging.getLogger("visio.recording.test")


@pytest.mark.parametrize(
    ("display_name", "expected"),
    [
        ("Alice Martin", "Alice_Martin"),
        ("Élodie Müller-Ørsted", "Élodie_Müller-Ørsted"),
        ("李小龙", "李小龙"),
        ("../../etc/passwd", "etc_passwd"),
        ("..", "participant"),
        ("", "participant"),
        ("\x00\x1b[31m\n", "31m"),
        ("\u202egnp.exe", "gnp_exe"),
        ("a/b\\c:d", "a_b_c_d"),
        ("e\u0301", "é"),  # composed
    ],
)
def test_safe_names(display_name: str, expected: str) -> None:
    assert safe_name(display_name) == expected


def test_safe_names_are_short_even_in_wide_scripts() -> None:
    for name in ("x" * 1000, "é" * 1000, "李" * 1000, "😀" * 1000):
        safe = safe_name(name)
        assert 0 < len(safe.encode()) <= MAX_NAME_BYTES
        assert safe.encode().decode() == safe  # not cut inside a character


def test_metadata_text_is_printable() -> None:
    assert printable("Eve\x00\x1b[31m\n\u202eX (camera)") == "Eve [31m X (camera)"
    assert len(printable("x" * 1000)) == 200


def test_files_are_created_exclusively_and_privately(tmp_path: Path) -> None:
    first = create_file(tmp_path, "Alice-camera", ".webm", numbered=True)
    second = create_file(tmp_path, "Alice-camera", ".webm", numbered=True)
    assert (first.name, second.name) == ("Alice-camera-1.webm", "Alice-camera-2.webm")
    (tmp_path / "mix.webm").write_bytes(b"an earlier file")
    mix = create_file(tmp_path, "mix", ".webm", numbered=False)
    assert mix.name == "mix-2.webm"
    assert (tmp_path / "mix.webm").read_bytes() == b"an earlier file"
    old = os.umask(0)
    try:
        mode = stat.S_IMODE(create_file(tmp_path, "x", ".webm", numbered=True).stat().st_mode)
    finally:
        os.umask(old)
    assert mode == 0o640
    with pytest.raises(AssertionError):
        create_file(tmp_path, "../escape", ".webm", numbered=True)


def test_a_track_is_placed_by_its_first_arrival_then_by_its_timestamps() -> None:
    timeline = TrackTimeline(start=100.0, rate=90000, log=log)
    assert timeline.place(123_000, 102.0) == 180_000  # joined late: timestamps start high
    assert timeline.place(126_000, 102.5) == 183_000  # jitter in arrival is ignored
    assert timeline.place(129_000, 102.04) == 186_000
    # A leap beyond the resync limit (here backwards): placed by arrival again...
    leap = timeline.place(129_000 - 10 * 90000, 102.1)
    assert leap == 189_000
    # ...and never before the previous frame.
    assert timeline.place(0, 102.12) >= leap


def test_a_timeline_tolerates_jumps_within_the_limit() -> None:
    timeline = TrackTimeline(start=0.0, rate=48000, log=log)
    assert timeline.place(0, 1.0) == 48000
    gap = int((RESYNC_SECONDS - 1) * 48000)
    assert timeline.place(gap, 1.0) == 48000 + gap  # a sender's pause, sent late


def test_the_inbox_bounds_frames_only() -> None:
    inbox: Inbox[str] = Inbox(2)
    assert inbox.offer("f1") and inbox.offer("f2")
    assert not inbox.offer("f3")
    inbox.put("end")  # never refused
    assert len(inbox) == 3
    assert [inbox.take(0) for _ in range(3)] == ["f1", "f2", "end"]
    assert inbox.take(0.01) is None
    assert inbox.offer("f4")


class CapturedMix(Mix):
    """A mix that keeps what it would encode."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, log)
        self.encoded: list[tuple[int, npt.NDArray[np.int16]]] = []

    def _encode(self, samples: npt.NDArray[np.int16], position: int) -> None:
        self.encoded.append((position, samples.copy()))

    def output(self) -> npt.NDArray[np.int16]:
        return np.concatenate([s for _, s in self.encoded])


def _pcm_mix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CapturedMix:
    """A captured mix whose "decoder" takes raw 16-bit samples, for exact arithmetic."""
    mix = CapturedMix(tmp_path)

    def add(mix_input: mix_module.MixInput, packet: bytes, position: int) -> None:
        mix._place(mix_input, np.frombuffer(packet, np.int16), position)

    monkeypatch.setattr(mix, "add", add)
    return mix


def test_tracks_are_summed_with_clipping(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mix = _pcm_mix(monkeypatch, tmp_path)
    a, b = mix.add_input("a"), mix.add_input("b")
    loud = np.full(BLOCK, 30000, np.int16)
    mix.add(a, loud.tobytes(), 0)
    mix.add(b, loud.tobytes(), BLOCK // 2)  # half a block later
    mix.add(b, (-loud).tobytes(), BLOCK // 2 + BLOCK)
    mix.add(a, (-loud).tobytes(), BLOCK // 2 + BLOCK)
    mix.finish()
    out = mix.output()
    assert out[: BLOCK // 2].tolist() == [30000] * (BLOCK // 2)
    assert set(out[BLOCK // 2 : BLOCK].tolist()) == {32767}  # 60000 clipped, not wrapped
    assert set(out[BLOCK : BLOCK + BLOCK // 2].tolist()) == {30000}
    assert set(out[BLOCK + BLOCK // 2 : 2 * BLOCK + BLOCK // 2].tolist()) == {-32768}
    assert mix.encoded[0][0] == 0


def test_the_mix_waits_for_every_live_track_or_the_lag(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mix = _pcm_mix(monkeypatch, tmp_path)
    a, b = mix.add_input("a"), mix.add_input("b")
    second = 48000
    one = np.ones(BLOCK, np.int16).tobytes()
    for n in range(50):  # a: one second
        mix.add(a, one, n * BLOCK)
    mix.add(b, one, 0)  # b: only its first 20 ms so far
    mix.advance(now=second)
    # Both sent the first 20 ms; b holds everything after back.
    assert [len(s) for _, s in mix.encoded] == [BLOCK]
    mix.advance(now=3 * second)  # until the lag is over
    assert sum(len(s) for _, s in mix.encoded) == 1 * second
    # An ended track holds nothing back.
    mix.end_input(b)
    mix.add(a, one, 50 * BLOCK)
    mix.advance(now=3 * second + BLOCK)
    assert sum(len(s) for _, s in mix.encoded) == 51 * BLOCK


def test_late_audio_misses_the_mix_but_not_the_timeline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mix = _pcm_mix(monkeypatch, tmp_path)
    a = mix.add_input("a")
    one = np.ones(BLOCK, np.int16).tobytes()
    mix.add(a, one, 0)
    mix.advance(now=10 * 48000)  # ten seconds of silence went out
    mix.add(a, one, BLOCK)  # 20 ms of audio ten seconds late
    mix.end_input(a)
    mix.finish()
    out = mix.output()
    assert int(out[:BLOCK].sum()) == BLOCK and not out[BLOCK:].any()
    assert "came too late for the mix" in caplog.text


def test_the_mix_holds_a_bounded_window(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mix = _pcm_mix(monkeypatch, tmp_path)
    a = mix.add_input("a")
    muted = mix.add_input("muted")
    one = np.ones(BLOCK, np.int16).tobytes()
    # Sent once, then nothing (muted): it must not hold a long meeting in memory.
    mix.add(muted, one, 0)
    for n in range(50 * 60 * 5):  # five minutes
        mix.add(a, one, n * BLOCK)
        mix.advance(now=(n + 1) * BLOCK)
        assert len(mix._blocks) <= 2 * 50 + 2  # the 2 s lag, in 20 ms blocks
    mix.encoded.clear()


def test_a_real_opus_track_decodes_into_the_mix(tmp_path: Path) -> None:
    mix = CapturedMix(tmp_path)
    a = mix.add_input("a")
    for n, packet in enumerate(opus_packets(tone(0.5, 440, amplitude=0.5), stereo=True)):
        mix.add(a, packet, 48000 + n * BLOCK)
    mix.finish()
    assert mix.encoded[0][0] == 48000
    out = mix.output().astype(np.float64) / 32768
    assert np.sqrt(np.mean(out[4800:19200] ** 2)) == pytest.approx(0.5 / 2**0.5, rel=0.1)
