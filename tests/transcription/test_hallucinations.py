"""What Whisper invents on noise is dropped; what people say is kept."""

from __future__ import annotations

import pytest

from bridge.transcription.hallucinations import Decoded, is_hallucination, normalise


def confident(text: str) -> Decoded:
    return Decoded(text, no_speech_prob=0.02, avg_logprob=-0.25, compression_ratio=1.1)


def unsure(text: str) -> Decoded:
    return Decoded(text, no_speech_prob=0.35, avg_logprob=-0.9, compression_ratio=1.1)


@pytest.mark.parametrize(
    "text",
    [
        "Sous-titres réalisés par la communauté d'Amara.org",
        "Sous-titrage ST' 501",
        "Sous-titrage Société Radio-Canada",
        "Merci d'avoir regardé cette vidéo !",
        "Thanks for watching!",
        "Thank you for watching.",
        "Subtitles by the Amara.org community",
        "Abonnez-vous !",
        "   ",
        "...",
    ],
)
def test_credits_and_sign_offs_are_dropped_however_confident(text: str) -> None:
    assert is_hallucination(confident(text))


@pytest.mark.parametrize("text", ["Thank you.", "Merci.", "you", "Bye!", "Okay."])
def test_a_lone_filler_is_kept_only_when_whisper_is_sure(text: str) -> None:
    assert not is_hallucination(confident(text))
    assert is_hallucination(unsure(text))


def test_whisper_s_own_signals() -> None:
    said = "Le budget est validé pour l'année prochaine."
    assert not is_hallucination(confident(said))
    assert not is_hallucination(unsure(said))
    # Likely silence and decoded with little confidence: Whisper's own rule.
    assert is_hallucination(Decoded(said, 0.8, -1.2, 1.1))
    # Likely silence, but decoded with confidence: speech over a quiet line.
    assert not is_hallucination(Decoded(said, 0.8, -0.3, 1.1))
    # A decoding loop repeats itself.
    assert is_hallucination(Decoded("je pense que " * 20, 0.1, -0.3, 3.2))
    # Guesswork.
    assert is_hallucination(Decoded(said, 0.1, -1.9, 1.1))


def test_normalise() -> None:
    assert normalise("  Réunion, à 10h : l'ÉCRAN!  ") == "reunion a 10h l ecran"
