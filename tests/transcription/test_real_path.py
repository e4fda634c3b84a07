"""The real path: a participant publishes speech over a real aiortc connection, the SFU
router forwards it encoded to the transcriber attached as a sink, and Whisper's text
comes back attributed to that participant, on the meeting clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiortc.mediastreams import MediaStreamTrack

from bridge.media.peer import new_peer_connection
from bridge.transcription.engines import Engine
from bridge.transcription.transcriber import Segment, Transcriber
from tests.harness.synthetic import LoopedOpusTrack
from tests.media.helpers import Meeting, wait_for

from . import speech


async def test_a_published_microphone_is_transcribed(whisper: Engine, voices: Path) -> None:
    sentence = speech.ENGLISH[1]
    audio = speech.with_pauses([speech.render(sentence, "en-us", voices)], pause=1.0)
    segments: list[Segment] = []
    transcriber = Transcriber(whisper, segments.append, language="en")
    meeting = Meeting()
    try:
        meeting.router.add_sink(transcriber)
        alice = meeting.join("alice")
        alice.publish_pc = new_peer_connection([])
        track: MediaStreamTrack = LoopedOpusTrack(tuple(speech.encode(audio)))
        alice._add(track, "microphone")
        published = asyncio.get_running_loop().time()
        await alice.renegotiate_publish()
        await wait_for(lambda: segments, within=20)
    finally:
        await meeting.close()
        await transcriber.stop(grace=5)

    first = segments[0]
    print(f"\nOver aiortc: {first.text!r}, said at +{first.start - published:.2f} s")
    assert first.participant_id == "alice"
    assert speech.word_error_rate(sentence, first.text) <= 0.35
    # It was said about a second after the track started (plus connection set-up).
    assert published + 0.5 <= first.start <= published + 8.0
    assert first.end - first.start >= len(audio) / speech.RATE - 2.0 - 0.6
