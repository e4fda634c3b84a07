"""Transcription of a real meeting: Synapse, the bridge with Whisper base, and two
people in headless Chromium whose microphones play sentences spoken by espeak-ng
(``--use-file-for-fake-audio-capture``). The transcript in the room attributes each
sentence to its speaker, within the word error rate Whisper base should reach on this
voice, and the captions show under the speaker's tile on the other person's page."""

from __future__ import annotations

import asyncio
import re
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.conftest import require_or_skip
from tests.devtools.models import model_cache
from tests.harness.synthetic import LoopedOpusTrack
from tests.integration.browser import CHROMIUM_ARGS, chromium_path, new_participant, open_meeting
from tests.integration.conftest import Stack, eventually
from tests.integration.test_browser_capture import wait_for_badge
from tests.integration.test_signaling import Meet, meet  # noqa: F401 - the fixture

np = pytest.importorskip("numpy")
speech = pytest.importorskip("tests.transcription.speech")

WHISPER_DIR = model_cache() / "whisper-base"
ALICE = speech.ENGLISH[:3]
BOB = speech.ENGLISH[3:]

pytestmark = [
    pytest.mark.one_database,
    pytest.mark.bridge_config(
        {
            "transcription.engine": "whisper",
            "transcription.model_dir": str(WHISPER_DIR),
            "transcription.language": "en",
            "transcription.max_speakers": 2,
        }
    ),
]


@pytest.fixture(scope="module", autouse=True)
def whisper_model() -> Path:
    """Fetched and checked before the bridge starts (it loads the model at start)."""
    from bridge.transcription.models import ModelError
    from tests.devtools.models import whisper_base_dir

    try:
        return whisper_base_dir()
    except ModelError as error:
        require_or_skip(False, f"the Whisper-base model ({error})")
        raise


def spoken(sentences: tuple[str, ...], path: Path, cache: Path) -> Path:
    """A WAV file of the sentences with pauses, as Chromium plays it in a loop."""
    require_or_skip(speech.espeak_available(), "espeak-ng (apt-get install espeak-ng)")
    parts = [speech.render(text, "en-us", cache) for text in sentences]
    samples = np.concatenate([speech.with_pauses(parts, pause=1.2), speech.silence(3)])
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(speech.RATE)
        out.writeframes(samples.astype(np.int16).tobytes())
    return path


@asynccontextmanager
async def voiced(wav: Path) -> AsyncIterator[Browser]:
    """A Chromium whose fake microphone plays ``wav``."""
    path = chromium_path()
    require_or_skip(path is not None, "Debian chromium (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=path,
            headless=True,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"],
        )
        try:
            yield browser
        finally:
            await browser.close()


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def best_error(sentence: str, said: str) -> float:
    """The word error rate of ``sentence`` against its best-matching stretch of
    ``said`` (a turn may hold several sentences)."""
    expected, heard = words(sentence), words(said)
    best = 1.0
    for size in range(max(1, len(expected) - 2), len(expected) + 3):
        for start in range(max(1, len(heard) - size + 1)):
            window = " ".join(heard[start : start + size])
            best = min(best, speech.word_error_rate(" ".join(expected), window))
    return best


async def test_the_room_gets_who_said_what_and_the_pages_show_captions(
    meet: Meet,  # noqa: F811
    tmp_path: Path,
) -> None:
    stack: Stack = meet.stack
    alice_user = meet.users["alice"]
    voices = tmp_path / "voices"
    voices.mkdir()
    alice_wav = spoken(ALICE, tmp_path / "alice.wav", voices)
    bob_wav = spoken(BOB, tmp_path / "bob.wav", voices)
    async with voiced(alice_wav) as alice_browser, voiced(bob_wav) as bob_browser:
        alice = await new_participant(alice_browser)
        bob = await new_participant(bob_browser)
        try:
            base = f"{stack.config['web.public_url']}/meet/{meet.meeting.id}#token="
            await open_meeting(
                alice.page, base + meet.link(alice_user.user_id), display_name="Alice"
            )
            await open_meeting(
                bob.page, base + meet.link(meet.users["bob"].user_id), display_name="Bob"
            )
            await alice_user.send_text(meet.room_id, "!visio transcribe on")
            await alice_user.wait_for_message(
                meet.room_id, lambda e: "Transcription started by" in e["content"]["body"]
            )
            # The transcript is a thread under the notice that announced the meeting.
            root = {"event_id": meet.meeting.notice_event}
            assert root["event_id"] is not None
            turns: dict[str, list[str]] = {"Alice": [], "Bob": []}

            async def heard_everyone() -> bool:
                await alice_user.sync_once()
                for said in turns.values():
                    said.clear()
                for event in alice_user.timeline(meet.room_id):
                    relation = event["content"].get("m.relates_to", {})
                    name, _, text = event["content"].get("body", "").partition(": ")
                    if relation.get("event_id") == root["event_id"] and name in turns:
                        turns[name].append(text)
                return all(
                    any(best_error(s, said) <= 0.2 for said in turns[name])
                    for name, sentences in (("Alice", ALICE), ("Bob", BOB))
                    for s in sentences
                )

            await eventually(heard_everyone, within=120)
            errors = {
                s: min(best_error(s, said) for said in turns[name])
                for name, sentences in (("Alice", ALICE), ("Bob", BOB))
                for s in sentences
            }
            print("word error rate per sentence:", errors)
            # Each sentence is attributed to its speaker only.
            for name, sentences in (("Alice", BOB), ("Bob", ALICE)):
                for s in sentences:
                    assert all(best_error(s, said) > 0.5 for said in turns[name]), (name, s)

            # Bob's page shows Alice's words under her tile, as she speaks.
            alice_id = await alice.page.evaluate("() => window.visio.self.participant_id")
            line = bob.page.locator(f'.tile[data-participant-id="{alice_id}"] .live-caption')

            async def captioned() -> bool:
                text = await line.text_content() if await line.is_visible() else ""
                return any(best_error(s, text or "") <= 0.5 for s in ALICE)

            await eventually(captioned, within=60)
            await wait_for_badge(bob.page, "meeting-capture", ["Transcribing"])
        finally:
            await alice.close()
            await bob.close()
    assert stack.bridge is not None


async def test_five_speakers_on_two_cores_limit_captions_never_the_media(
    meet: Meet,  # noqa: F811
    tmp_path: Path,
) -> None:
    """With max_speakers 2, five people speaking at once: the pages are told that
    captions are limited, and the video everyone receives keeps its frame rate."""
    stack: Stack = meet.stack
    alice_user = meet.users["alice"]
    voices = tmp_path / "voices"
    voices.mkdir()
    speakers = []
    for n, name in enumerate(("carol", "dave", "erin", "frank")):
        user = await stack.user(name)
        await alice_user.invite(meet.room_id, user.user_id)
        await user.join(meet.room_id)
        meet.users[name] = user
        speakers.append((name, speech.ENGLISH[n:] + speech.ENGLISH[:n]))
    speakers.insert(0, ("alice", speech.ENGLISH))

    def voice(sentences: tuple[str, ...]) -> LoopedOpusTrack:
        parts = [speech.render(text, "en-us", voices) for text in sentences]
        return LoopedOpusTrack(tuple(speech.encode(speech.with_pauses(parts, pause=0.4))))

    bob, _ = await meet.joined("bob", name="Bob")
    clients = []
    for name, sentences in speakers:
        client, _ = await meet.joined(name, name=name.title())
        await client.publish(camera=name == "alice", voice=voice(sentences))
        clients.append(client)
    alice = clients[0]
    await alice_user.send_text(meet.room_id, "!visio transcribe on")
    await alice_user.wait_for_message(
        meet.room_id, lambda e: "Transcription started by" in e["content"]["body"]
    )
    # Told as soon as a third person speaks, and kept up to date as more do.
    status = await bob.expect("captions_status", within=60)
    while "of 5 microphones" not in status["message"]:
        assert status["limited"] is True, status
        status = await bob.expect("captions_status", within=60)
    assert status["limited"] is True
    print("captions:", status["message"])

    # While five people speak and two are transcribed, the camera reaches Bob at the
    # rate it is sent (a generous bound: this is about not stalling, not a benchmark).
    assert alice.camera is not None
    sent_before = len(alice.camera.sent)
    received_before = len(bob.frames_from(alice.participant_id, "camera"))
    await asyncio.sleep(6)
    sent = len(alice.camera.sent) - sent_before
    received = len(bob.frames_from(alice.participant_id, "camera")) - received_before
    print(f"camera frames in 6 s: sent {sent}, received {received}")
    assert sent > 60 and received >= 0.8 * sent
