"""Transcription: who said what in a meeting, decoded on the agency's own machines.

- :mod:`.engines`: speech-to-text engines (faster-whisper, pocketsphinx) behind
  :class:`~.engines.Engine`, made by :func:`~.engines.load_engine`;
- :mod:`.transcriber`: :class:`~.transcriber.Transcriber`, the receive-only media sink
  that decodes each microphone, finds speech and reports :class:`~.transcriber.Segment`
  values;
- :mod:`.models`: checks (and assembles) a Whisper model directory.

The engines, the VAD, numpy and onnxruntime come with the optional ``transcription``
extra. Importing this package, :mod:`.engines`, :mod:`.transcriber` and :mod:`.models`
works without it; :mod:`.audio`, :mod:`.vad` and :mod:`.listening` need it.
"""

from .engines import Engine, load_engine
from .models import ModelError, assemble_whisper_base, verify_model_dir
from .transcriber import Segment, Transcriber

__all__ = [
    "Engine",
    "ModelError",
    "Segment",
    "Transcriber",
    "assemble_whisper_base",
    "load_engine",
    "verify_model_dir",
]
