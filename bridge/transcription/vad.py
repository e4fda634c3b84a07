"""Where someone speaks: Silero VAD, streamed, cutting a speaker's audio into utterances.

Only utterances reach an engine: silence costs no decoding, and Whisper, which invents
text for noise, never sees most of it. An utterance ends at a pause
(:attr:`Cutting.pause`), or at :attr:`Cutting.max_length` where a speaker does not pause,
preferably at the last short pause before it; one with less than
:attr:`Cutting.min_speech` of speech in it is dropped (a cough, a click).

The model is the Silero VAD that faster-whisper ships (ONNX, run by onnxruntime on one
thread); it rates 32 ms windows, carrying its state from one to the next, so each
speaker's :class:`VadState` lives outside the shared model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .audio import SAMPLE_RATE

#: The window Silero rates at 16 kHz, and the samples of the previous one it looks at.
WINDOW = 512
_CONTEXT = 64


@dataclass(frozen=True, slots=True)
class Cutting:
    """How speech is cut into utterances (seconds)."""

    #: Silero's speech probability at which a window is speech...
    threshold: float = 0.5
    #: ...and below which it is silence (between the two it continues what it was).
    neg_threshold: float = 0.35
    #: A pause this long ends an utterance.
    pause: float = 0.6
    #: An utterance is cut at this length (Whisper reads 30 s at most, and captions
    #: should not wait for a long speech to end).
    max_length: float = 15.0
    #: Utterances with less speech than this are dropped.
    min_speech: float = 0.3
    #: Audio kept before the first speech window and after the last one.
    padding: float = 0.2
    #: A pause this long is a good place to cut an utterance that runs too long.
    short_pause: float = 0.1


@dataclass(slots=True)
class VadState:
    """One speaker's Silero state (its LSTM state and the tail of the last window)."""

    h: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((1, 1, 128), np.float32))
    c: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((1, 1, 128), np.float32))
    context: npt.NDArray[np.float32] = field(
        default_factory=lambda: np.zeros(_CONTEXT, np.float32)
    )


class SileroVad:
    """The Silero VAD model, shared by every speaker (one thread uses it at a time)."""

    def __init__(self) -> None:
        try:
            import onnxruntime
            from faster_whisper.utils import get_assets_path
        except ImportError as error:
            raise ValueError(
                f"Voice detection needs the transcription extra ({error.name} is missing)."
            ) from error
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(
            os.path.join(get_assets_path(), "silero_vad_v6.onnx"),
            providers=["CPUExecutionProvider"],
            sess_options=options,
        )

    def rate(self, windows: npt.NDArray[np.float32], state: VadState) -> npt.NDArray[np.float32]:
        """Speech probabilities of consecutive windows (shape ``(n, WINDOW)``), updating
        ``state``."""
        contexts = np.concatenate([state.context[None, :], windows[:-1, -_CONTEXT:]])
        batch = np.concatenate([contexts, windows], axis=1)
        output: Any
        output, state.h, state.c = self._session.run(
            None, {"input": batch, "h": state.h, "c": state.c}
        )
        state.context = windows[-1, -_CONTEXT:].copy()
        return np.asarray(output, dtype=np.float32).reshape(-1)


@dataclass(frozen=True, slots=True)
class Utterance:
    """A stretch of one speaker's audio with speech in it."""

    #: Index of its first sample on the track's timeline (16 kHz).
    start: int
    samples: npt.NDArray[np.float32]

    @property
    def end(self) -> int:
        return self.start + len(self.samples)


class SpeechDetector:
    """Cuts one speaker's continuous 16 kHz audio into :class:`Utterance` values."""

    def __init__(self, vad: SileroVad, cutting: Cutting | None = None, start: int = 0) -> None:
        self._vad = vad
        self._cutting = cutting = cutting or Cutting()
        self._state = VadState()
        self._pending = np.zeros(0, np.float32)
        #: Index of the first sample of the next window.
        self._position = start
        self._pad = max(1, round(cutting.padding * SAMPLE_RATE / WINDOW))
        self._pause = max(1, round(cutting.pause * SAMPLE_RATE / WINDOW))
        self._short_pause = max(1, round(cutting.short_pause * SAMPLE_RATE / WINDOW))
        self._max = max(2, int(cutting.max_length * SAMPLE_RATE / WINDOW))
        self._min_speech = cutting.min_speech * SAMPLE_RATE / WINDOW
        # The utterance being heard: its windows, whether each is speech, where it starts.
        self._windows: list[npt.NDArray[np.float32]] = []
        self._speech: list[bool] = []
        self._start = start
        self._speaking = False
        self._silent_run = 0
        # Where to cut if the utterance runs too long: the middle of its last short pause.
        self._cut = 0

    @property
    def position(self) -> int:
        """Index of the next sample expected on the track's timeline."""
        return self._position + len(self._pending)

    def feed(self, samples: npt.NDArray[np.float32]) -> list[Utterance]:
        """Take the next samples; return the utterances they complete."""
        audio = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        count = len(audio) // WINDOW
        self._pending = audio[count * WINDOW :].copy()
        if count == 0:
            return []
        windows = audio[: count * WINDOW].reshape(count, WINDOW)
        probabilities = self._vad.rate(windows, self._state)
        done: list[Utterance] = []
        for window, probability in zip(windows, probabilities, strict=True):
            done.extend(self._window(window, float(probability)))
            self._position += WINDOW
        return done

    def flush(self) -> list[Utterance]:
        """The track ended or jumped: end the utterance in progress."""
        done = self._emit(len(self._windows)) if self._speaking else []
        self._reset(self._position)
        return done

    def skip_to(self, position: int) -> list[Utterance]:
        """The track resumes at ``position`` after a long gap: end what was heard."""
        done = self.flush()
        self._pending = np.zeros(0, np.float32)
        self._position = position
        self._state = VadState()
        self._reset(position)
        return done

    def _reset(self, position: int) -> None:
        self._windows.clear()
        self._speech.clear()
        self._start = position
        self._speaking = False
        self._silent_run = 0
        self._cut = 0

    def _window(self, window: npt.NDArray[np.float32], probability: float) -> list[Utterance]:
        cutting = self._cutting
        if self._silent_run:
            speech = probability >= cutting.threshold
        else:
            speech = probability >= (
                cutting.neg_threshold if self._speaking else cutting.threshold
            )
        if not self._speaking:
            self._windows.append(window)
            self._speech.append(speech)
            if not speech:
                # Only the padding before speech is kept.
                if len(self._windows) > self._pad:
                    del self._windows[0], self._speech[0]
                    self._start += WINDOW
                return []
            self._speaking = True
            self._silent_run = 0
            return []
        self._windows.append(window)
        self._speech.append(speech)
        if speech:
            self._silent_run = 0
        else:
            self._silent_run += 1
            if self._silent_run == self._short_pause:
                self._cut = len(self._windows) - self._short_pause // 2 - 1
        if self._silent_run >= self._pause:
            return self._emit(len(self._windows) - self._silent_run + self._pad)
        if len(self._windows) >= self._max:
            return self._emit(self._cut if self._cut > self._max // 2 else len(self._windows))
        return []

    def _emit(self, count: int) -> list[Utterance]:
        """End the utterance after its first ``count`` windows; what follows stays (as
        the start of the next one, or as padding before it)."""
        count = min(count, len(self._windows))
        head, speech = self._windows[:count], self._speech[:count]
        utterance = Utterance(self._start, np.concatenate(head)) if head else None
        del self._windows[:count], self._speech[:count]
        self._start += count * WINDOW
        self._cut = 0
        rest = self._speech
        if any(rest):
            # Cut inside speech (too long): the rest goes on as the next utterance.
            self._silent_run = 0
            for speaking in reversed(rest):
                if speaking:
                    break
                self._silent_run += 1
        else:
            self._speaking = False
            self._silent_run = 0
            excess = len(self._windows) - self._pad
            if excess > 0:
                del self._windows[:excess], self._speech[:excess]
                self._start += excess * WINDOW
        if utterance is None or sum(speech) < self._min_speech:
            return []
        return [utterance]
