"""Speech-to-text engines behind one small interface.

An engine turns one utterance (16 kHz mono float32 samples, cut by our VAD) into text.
``transcribe`` blocks for as long as decoding takes (a second or more of CPU), so the
transcriber calls it in worker threads, never on the event loop. CTranslate2 releases
the GIL while it decodes; PocketSphinx does not, so it decodes in worker processes.

- ``whisper``: faster-whisper (CTranslate2, int8 on the CPU), from a local model
  directory only. The language is always given, never detected: detection on a few
  seconds of speech guesses wrong often enough to caption French in English.
- ``pocketsphinx``: the light English-only engine; its wheel ships the en-US model.

Both come with the optional ``transcription`` extra and are imported only when an
engine is made, so the bridge runs without them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .hallucinations import Decoded, is_hallucination
from .priority import in_low_priority_thread, lower_priority

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

#: What each engine is called in the configuration.
ENGINES = ("whisper", "pocketsphinx", "none")
#: The files faster-whisper reads from a model directory.
WHISPER_MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")
#: Enough to explore a few readings, small enough to stay near real time on a CPU.
WHISPER_BEAM_SIZE = 2

log = logging.getLogger("visio.transcription")


class Engine(Protocol):
    """Speech to text for one utterance; ``transcribe`` may be called from several
    worker threads at once."""

    def transcribe(self, samples: npt.NDArray[np.float32], language: str) -> str:
        """The text said in ``samples`` (16 kHz, mono, float32 in [-1, 1]), in
        ``language`` (an ISO 639-1 code); ``""`` when nothing was said."""
        ...

    def close(self) -> None:
        """Stop the engine's workers, if it has any (after the last ``transcribe``)."""
        ...


def _missing_extra(engine: str, error: ImportError) -> ValueError:
    return ValueError(
        f"The {engine} engine is not installed ({error.name} is missing): install Visio "
        "Bridge with its transcription extra, pip install 'visio-bridge[transcription]'."
    )


class WhisperEngine:
    """faster-whisper on the CPU, int8, from a model directory on this machine."""

    def __init__(self, model_dir: str, language: str, *, workers: int = 1, threads: int = 0):
        path = Path(model_dir)
        if not path.is_dir():
            raise ValueError(f"The Whisper model directory {model_dir} does not exist.")
        missing = [name for name in WHISPER_MODEL_FILES if not (path / name).is_file()]
        if missing:
            raise ValueError(
                f"{model_dir} is not a Whisper model directory for faster-whisper: "
                f"{', '.join(missing)} missing."
            )
        # huggingface_hub reads this when imported: with it, a bug that names a model
        # instead of a directory fails instead of downloading.
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            from faster_whisper import WhisperModel
        except ImportError as error:
            raise _missing_extra("whisper", error) from error
        try:
            # CTranslate2 starts its decoding threads here: they inherit a low priority.
            self._model = in_low_priority_thread(
                lambda: WhisperModel(
                    str(path),
                    device="cpu",
                    compute_type="int8",
                    cpu_threads=threads or max(1, (os.cpu_count() or 1) // workers),
                    num_workers=workers,
                    local_files_only=True,
                )
            )
        except (RuntimeError, ValueError, OSError) as error:
            raise ValueError(
                f"The Whisper model in {model_dir} could not be loaded: {error}"
            ) from error
        # It logs every utterance's length at INFO; keep it out of the bridge's log
        # unless the operator configured it.
        library_log = logging.getLogger("faster_whisper")
        if library_log.level == logging.NOTSET:
            library_log.setLevel(logging.WARNING)
        if language not in self._model.supported_languages:
            raise ValueError(f"The Whisper model in {model_dir} does not know {language!r}.")

    def transcribe(self, samples: npt.NDArray[np.float32], language: str) -> str:
        segments, _info = self._model.transcribe(
            samples,
            language=language,
            beam_size=WHISPER_BEAM_SIZE,
            # One pass: the fallback to higher temperatures costs up to five more
            # decodes, and what it rescues is mostly what we drop as hallucination.
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        kept = []
        for segment in segments:
            decoded = Decoded(
                segment.text,
                segment.no_speech_prob,
                segment.avg_logprob,
                segment.compression_ratio,
            )
            if is_hallucination(decoded):
                log.debug("dropped as hallucination: %r", decoded)
            else:
                kept.append(segment.text.strip())
        return " ".join(kept)

    def close(self) -> None:
        """Nothing to stop: CTranslate2's threads go with the model."""


class SphinxEngine:
    """PocketSphinx with the en-US model its wheel ships: light, English only.

    It decodes in worker processes, not threads: PocketSphinx holds the GIL for the
    whole of each call, and two threads decoding stalled the event loop for 0.1 to 0.3 s
    at a time (measured), however small the pieces they were fed. The processes are
    spawned, so the program's main module must be safe to import (the ``if __name__ ==
    "__main__"`` idiom), as ``python -m bridge`` is.
    """

    def __init__(self, *, workers: int = 1) -> None:
        try:
            import pocketsphinx  # noqa: F401  (checked here, used in the workers)
        except ImportError as error:
            raise _missing_extra("pocketsphinx", error) from error
        self._workers = workers
        self._pool = self._start()
        try:
            self._pool.submit(_sphinx_decode, bytes(3200)).result(timeout=120)  # 0.1 s
        except Exception as error:
            self._pool.shutdown(wait=False, cancel_futures=True)
            raise ValueError(f"PocketSphinx could not start: {error}") from error

    def _start(self) -> ProcessPoolExecutor:
        # Not fork: this process has threads (the event loop's executors, ours).
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(self._workers, mp_context=context, initializer=_sphinx_start)

    def transcribe(self, samples: npt.NDArray[np.float32], language: str) -> str:
        """``language`` is English whatever is asked (checked by :func:`load_engine`)."""
        import numpy as np

        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        pool = self._pool
        try:
            return pool.submit(_sphinx_decode, pcm).result()
        except BrokenProcessPool:
            # A worker died (killed, out of memory): this utterance is lost, the next
            # ones go to new workers.
            if self._pool is pool:
                self._pool = self._start()
            raise

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


#: The decoder of a PocketSphinx worker process (made by :func:`_sphinx_start`).
_sphinx_decoder: Any = None


def _sphinx_start() -> None:
    global _sphinx_decoder
    lower_priority()
    import pocketsphinx

    _sphinx_decoder = pocketsphinx.Decoder(samprate=16000, logfn=os.devnull)


def _sphinx_decode(pcm: bytes) -> str:
    if not pcm:
        return ""
    decoder = _sphinx_decoder
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hypothesis = decoder.hyp()
    return str(hypothesis.hypstr).strip() if hypothesis is not None else ""


def load_engine(
    engine: str, model_dir: str | None, language: str, *, workers: int = 1
) -> Engine | None:
    """The engine the configuration names, ready to use (``None`` for ``"none"``).

    ``model_dir`` is the Whisper model directory (ignored by pocketsphinx); ``language``
    the meetings' language, checked against what the engine knows; ``workers`` how many
    threads will call ``transcribe`` at once. Raises :class:`ValueError` in plain words
    for an unknown engine, a missing extra, a missing or invalid model directory, or a
    language the engine cannot do.
    """
    if engine == "none":
        return None
    if engine == "whisper":
        if not model_dir:
            raise ValueError("The whisper engine needs a model directory (model_dir).")
        return WhisperEngine(model_dir, language, workers=workers)
    if engine == "pocketsphinx":
        if language.lower() not in ("en", "en-us"):
            raise ValueError(
                f"pocketsphinx only transcribes English (en), not {language!r}: "
                "use the whisper engine for other languages."
            )
        return SphinxEngine(workers=workers)
    raise ValueError(f"Unknown transcription engine {engine!r}: use {', '.join(ENGINES)}.")
