"""Active speaker detection from RFC 6464 levels."""

from __future__ import annotations

from bridge.media.speaker import ActiveSpeakerDetector

from .helpers import FakeClock

LOUD, QUIET, SILENT = 20, 45, 127


def make() -> tuple[ActiveSpeakerDetector, FakeClock, list[str]]:
    clock = FakeClock()
    changes: list[str] = []
    detector = ActiveSpeakerDetector(changes.append, clock, speaking_level=50, switch_delay=0.5)
    return detector, clock, changes


def talk(detector: ActiveSpeakerDetector, clock: FakeClock, seconds: float, **levels: int) -> None:
    """Feed one packet per 20 ms per participant."""
    for _ in range(round(seconds / 0.02)):
        for participant_id, level in levels.items():
            detector.add_level(participant_id, level)
        clock.advance(0.02)


def test_a_speaker_becomes_active_after_the_switch_delay() -> None:
    detector, clock, changes = make()
    talk(detector, clock, 0.4, alice=LOUD, bob=SILENT)
    assert changes == []
    talk(detector, clock, 0.3, alice=LOUD, bob=SILENT)
    assert changes == ["alice"] and detector.active == "alice"


def test_silence_keeps_the_last_speaker() -> None:
    detector, clock, changes = make()
    talk(detector, clock, 1, alice=LOUD, bob=SILENT)
    talk(detector, clock, 3, alice=SILENT, bob=SILENT)
    assert changes == ["alice"]


def test_speaker_switches_when_the_other_talks() -> None:
    detector, clock, changes = make()
    talk(detector, clock, 1, alice=LOUD, bob=SILENT)
    talk(detector, clock, 1, alice=SILENT, bob=LOUD)
    assert changes == ["alice", "bob"]


def test_no_flapping_between_two_similar_speakers() -> None:
    detector, clock, changes = make()
    talk(detector, clock, 1, alice=LOUD, bob=SILENT)
    # Bob talks a little louder than Alice, and the lead alternates quickly: no switch.
    for _ in range(20):
        talk(detector, clock, 0.1, alice=LOUD, bob=LOUD - 3)
        talk(detector, clock, 0.1, alice=LOUD - 3, bob=LOUD)
    assert changes == ["alice"]


def test_short_interjection_does_not_switch() -> None:
    detector, clock, changes = make()
    talk(detector, clock, 1, alice=QUIET, bob=SILENT)
    talk(detector, clock, 0.3, alice=SILENT, bob=LOUD)  # "uh-huh"
    talk(detector, clock, 1, alice=QUIET, bob=SILENT)
    assert changes == ["alice"]


def test_stopped_packets_count_as_silence() -> None:
    detector, clock, changes = make()
    talk(detector, clock, 1, alice=LOUD)
    talk(detector, clock, 1.5, bob=QUIET)  # alice sends nothing any more (muted)
    assert changes == ["alice", "bob"]


def test_removed_participant_is_forgotten() -> None:
    detector, clock, changes = make()
    talk(detector, clock, 1, alice=LOUD)
    detector.remove("alice")
    assert detector.active is None
    talk(detector, clock, 1, bob=QUIET)
    assert changes == ["alice", "bob"]
