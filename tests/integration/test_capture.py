"""Recording a meeting for real: Synapse, the bridge, aiortc participants. A moderator
records from the room; everyone in the meeting is told at once; the files land in the
room's thread through the homeserver's media repository, decode with ffprobe, and hold
the very frames the SFU forwarded."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
from typing import Any

import av
import pytest

from bridge.capture.retention import DAY_MS, Retention
from bridge.clock import ManualClock
from tests.integration.conftest import Stack, eventually
from tests.integration.test_signaling import Meet, meet  # noqa: F401 - the fixture

JSON = dict[str, Any]

needs_ffprobe = pytest.mark.skipif(
    shutil.which("ffprobe") is None and os.environ.get("CI") != "true",
    reason="ffprobe (Debian package ffmpeg) is not installed",
)


def probe(data: bytes, suffix: str, tmp: Any) -> JSON:
    path = tmp / f"probe{suffix}"
    path.write_bytes(data)
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
            str(path),
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def packets(data: bytes) -> list[bytes]:
    with av.open(io.BytesIO(data)) as container:
        return [bytes(packet) for packet in container.demux() if packet.size]


@needs_ffprobe
@pytest.mark.one_database
async def test_a_recording_is_announced_posted_and_holds_the_forwarded_frames(
    meet: Meet,  # noqa: F811
    tmp_path: Any,
) -> None:
    stack: Stack = meet.stack
    alice_user, bob_user = meet.users["alice"], meet.users["bob"]
    alice, _ = await meet.joined("alice", name="Alice")
    bob, _ = await meet.joined("bob", name="Bob")
    await alice.publish()
    await bob.publish(camera=False)

    # Bob may not record; the room's creator (a moderator) may.
    await bob_user.send_text(meet.room_id, "!visio record start")
    await bob_user.wait_for_message(
        meet.room_id, lambda e: "Only moderators" in e["content"]["body"]
    )
    await alice_user.send_text(meet.room_id, "!visio record start")
    await alice_user.wait_for_message(
        meet.room_id, lambda e: "Recording started by" in e["content"]["body"]
    )
    for client in (alice, bob):
        told = await client.expect("capture_changed")
        assert told["recording"] is True and told["transcribing"] is False
    await eventually(
        lambda: _count(bob.frames_from(alice.participant_id, "camera"), 90), within=20
    )
    await asyncio.sleep(1)  # a little more of Bob's voice in the mix

    await alice_user.send_text(meet.room_id, "!visio record stop")
    await alice_user.wait_for_message(
        meet.room_id, lambda e: "Recording stopped by" in e["content"]["body"]
    )
    assert (await bob.expect("capture_changed"))["recording"] is False
    root = await alice_user.wait_for_message(
        meet.room_id, lambda e: e["content"].get("body", "").startswith("Recording of"), timeout=30
    )
    files: list[JSON] = []

    async def posted() -> bool:
        await alice_user.sync_once()
        files[:] = [
            e
            for e in alice_user.timeline(meet.room_id)
            if e["content"].get("m.relates_to", {}).get("event_id") == root["event_id"]
            and "url" in e["content"]
        ]
        return len(files) == 4

    await eventually(posted, within=30)
    by_name = {f["content"]["body"]: f["content"] for f in files}
    assert sorted(by_name) == [
        "Alice-camera-1.webm",
        "Alice-microphone-1.webm",
        "Bob-microphone-1.webm",
        "mix.webm",
    ]
    camera = by_name["Alice-camera-1.webm"]
    assert camera["msgtype"] == "m.video" and camera["info"]["mimetype"] == "video/webm"
    data = await alice_user.download(camera["url"])
    assert len(data) == camera["info"]["size"]
    info = probe(data, ".webm", tmp_path)
    assert info["streams"][0]["codec_name"] == "vp8"
    assert float(info["format"]["duration"]) > 1
    # Exactly the frames the SFU forwarded to Bob: the same bytes, in the same order.
    recorded = packets(data)
    forwarded = [f.data for f in bob.frames_from(alice.participant_id, "camera")]
    start = forwarded.index(recorded[0])
    overlap = min(len(recorded), len(forwarded) - start)
    assert overlap > 30 and recorded[:overlap] == forwarded[start : start + overlap]

    mix = await alice_user.download(by_name["mix.webm"]["url"])
    assert probe(mix, ".webm", tmp_path)["streams"][0]["codec_name"] == "opus"
    # The files stay on the bridge's disk until retention deletes them.
    bridge = stack.bridge
    assert bridge is not None
    kept = list((stack.directory / "recordings" / meet.meeting.id).rglob("*.webm"))
    assert len(kept) == 4

    # A month later: retention deletes the files and redacts their messages in the room;
    # the bot is no server admin here, so it says the uploads are left.
    later = ManualClock(bridge.clock.now_ms() + 31 * DAY_MS)
    retention = Retention(
        bridge.storage.capture_files,
        bridge.retention.poster,
        later,
        days={"recording": 30, "transcript": 30},
    )
    report = await retention.run()
    assert report.deleted == 4 and len(report.left) == 4
    assert all("the upload mxc://" in line for line in report.left)
    assert not any(path.exists() for path in kept)
    redacted = {f["event_id"] for f in files}

    async def gone() -> bool:
        await alice_user.sync_once()
        return redacted <= {
            # Top level before room version 11, in the content since.
            e.get("redacts") or e["content"].get("redacts")
            for e in alice_user.timeline(meet.room_id)
            if e["type"] == "m.room.redaction"
        }

    await eventually(gone)


async def _count(frames: list[Any], count: int) -> bool:
    return len(frames) >= count
