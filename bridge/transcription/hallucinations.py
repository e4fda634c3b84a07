"""What Whisper writes when nobody speaks, and how its text is told apart from speech.

Whisper was trained on subtitled video, so on noise, breath or a click it often "hears"
a subtitle credit or a sign-off ("Sous-titres réalisés par la communauté d'Amara.org",
"Thanks for watching!"), or loops on one phrase. Our VAD keeps most non-speech away
from it; these checks catch what still gets through, using Whisper's own confidence
signals for each segment it decodes.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

#: Whisper's own rule (from the reference implementation): a segment is silence when it
#: is likely "no speech" *and* decoded with low confidence.
NO_SPEECH_PROB = 0.6
LOW_LOGPROB = -1.0
#: Above this gzip ratio the text repeats itself: a decoding loop, not speech.
MAX_COMPRESSION_RATIO = 2.4
#: Below this mean token log-probability the text is guesswork whatever else is said.
GUESSWORK_LOGPROB = -1.6

#: Never said in a meeting: subtitle credits and video sign-offs (normalised, see
#: :func:`normalise`). A segment that starts with one of these is dropped.
_CREDITS = (
    "sous titres",
    "sous titrage",
    "merci d avoir regarde",
    "n oubliez pas de vous abonner",
    "abonnez vous",
    "subtitles by",
    "subtitled by",
    "transcribed by",
    "translated by",
    "captions by",
    "thanks for watching",
    "thank you for watching",
    "please subscribe",
    "like and subscribe",
    "amara org",
)

#: Said in meetings, but also Whisper's favourite words for a breath or a click: kept only
#: when Whisper is confident (see :data:`_SHORT_NO_SPEECH`, :data:`_SHORT_LOGPROB`).
_FILLERS = frozenset(
    {
        "you",
        "thank you",
        "thanks",
        "bye",
        "so",
        "okay",
        "ok",
        "oh",
        "hmm",
        "mmm",
        "uh",
        "um",
        "ah",
        "merci",
        "merci beaucoup",
        "au revoir",
        "bonjour",
        "voila",
        "euh",
        "hum",
    }
)
_SHORT_NO_SPEECH = 0.2
_SHORT_LOGPROB = -0.7


@dataclass(frozen=True, slots=True)
class Decoded:
    """One segment as Whisper decoded it, with its confidence signals."""

    text: str
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float


def normalise(text: str) -> str:
    """Lower case, no accents, punctuation as spaces, spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w]+", " ", letters).split())


def is_hallucination(segment: Decoded) -> bool:
    """Whether a decoded segment is Whisper's invention rather than what was said."""
    plain = normalise(segment.text)
    if not plain:
        return True
    if segment.no_speech_prob > NO_SPEECH_PROB and segment.avg_logprob < LOW_LOGPROB:
        return True
    if segment.compression_ratio > MAX_COMPRESSION_RATIO:
        return True
    if segment.avg_logprob < GUESSWORK_LOGPROB:
        return True
    if any(plain == credit or plain.startswith(credit + " ") for credit in _CREDITS):
        return True
    if plain in _FILLERS:
        return segment.no_speech_prob > _SHORT_NO_SPEECH or segment.avg_logprob < _SHORT_LOGPROB
    return False
