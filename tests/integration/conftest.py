"""A real Synapse on loopback with the bridge registered, and the bridge beside it."""

from __future__ import annotations

import asyncio
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from bridge.__main__ import STOP_LIMIT, write_registration
from bridge.config import Config, load_config
from bridge.context import Bridge
from tests.harness.synapse import LocalSynapse, MatrixUser, free_ports, member_event

ROOT = Path(__file__).resolve().parents[2]


def write_bridge_config(
    directory: Path,
    hs_port: int,
    as_port: int,
    web_port: int,
    database: str,
    *,
    server_name: str = "localhost",
    overrides: dict[str, Any] | None = None,
) -> Path:
    """A config file as an operator would write it, from the example; ``overrides``
    sets dotted keys (``{"federation.allowed_servers": [...]}``)."""
    yaml = YAML()
    data = yaml.load((ROOT / "config.example.yaml").read_text())
    data["homeserver"]["address"] = f"http://127.0.0.1:{hs_port}"
    data["homeserver"]["domain"] = server_name
    data["appservice"]["address"] = f"http://127.0.0.1:{as_port}"
    data["appservice"]["port"] = as_port
    data["appservice"]["database"] = database
    data["web"]["port"] = web_port
    data["web"]["public_url"] = f"http://127.0.0.1:{web_port}"
    data["bridge"]["permissions"] = {
        "*": "none",
        server_name: "user",
        f"@outsider:{server_name}": "none",
        f"@admin:{server_name}": "admin",
    }
    data["media"]["host_addresses"] = ["127.0.0.1"]
    # Everything here is on loopback, which production refuses by default.
    data["media"]["allow_private_candidates"] = True
    data["federation"]["allow_private_addresses"] = True
    data["logging"]["loggers"]["visio"]["level"] = "DEBUG"
    # Recordings and transcripts stay in the test's folder.
    data["recording"]["path"] = str(directory / "recordings")
    for key, value in (overrides or {}).items():
        *parents, last = key.split(".")
        section = data
        for parent in parents:
            section = section[parent]
        section[last] = value
    path = directory / "config.yaml"
    with path.open("w") as stream:
        yaml.dump(data, stream)
    return path


def generate_registration(config_path: Path, *, cli: bool = False) -> Path:
    """Generate the registration and the config's tokens, as `python -m bridge -g` does:
    with ``cli``, by running it as an operator does (tests/integration/test_cli.py);
    otherwise with the same calls in this process, which saves each test the two seconds
    a new interpreter takes to import the bridge."""
    registration = config_path.parent / "registration.yaml"
    if cli:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bridge",
                "-g",
                "-c",
                str(config_path),
                "-r",
                str(registration),
            ],
            check=True,
            capture_output=True,
            cwd=config_path.parent,
        )
        return registration
    config = load_config(str(config_path))
    data = config.generate_registration()
    config.save()
    write_registration(str(registration), data)
    return registration


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15) -> None:
    """Wait for something another process does (no fixed sleep stands in for it)."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - polls another process, no event to await
            await asyncio.sleep(0.05)


def png_image(size: int = 64) -> bytes:
    """A small solid-colour PNG, made here so the test needs no image files."""
    raw = b"".join(b"\x00" + b"\x20\x60\xc0" * size for _ in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@dataclass
class Stack:
    """Synapse, the bridge's config, and the running bridge (restartable)."""

    directory: Path
    homeserver: LocalSynapse
    config_path: Path
    bridge: Bridge | None = None
    users: list[MatrixUser] = field(default_factory=list)

    @property
    def config(self) -> Config:
        assert self.bridge is not None
        return self.bridge.config

    @property
    def bot(self) -> str:
        return self.config.bot_mxid

    async def start_bridge(self) -> Bridge:
        self.bridge = Bridge(load_config(str(self.config_path)))
        await self.bridge.start()
        await self.bridge.ping_homeserver()
        return self.bridge

    async def stop_bridge(self) -> None:
        if self.bridge is not None:
            await self.bridge.stop()

    async def user(self, localpart: str) -> MatrixUser:
        client = await self.homeserver.client_for(localpart)
        self.users.append(client)
        return client

    async def room_with_bot(
        self, owner: MatrixUser, *, bot_power: int | None = 50, name: str | None = None
    ) -> str:
        """A room made by ``owner`` with the bot invited (and joined)."""
        override = {"users": {self.bot: bot_power}} if bot_power else None
        room_id = await owner.create_room(name=name, power_level_override=override)
        await owner.invite(room_id, self.bot)
        await owner.wait_for_event(
            room_id,
            member_event(self.bot, membership="join"),
        )
        await owner.wait_for_message(room_id, lambda e: "Hello" in e["content"].get("body", ""))
        return room_id


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "bridge_config(overrides): config keys for the stack's bridge, e.g. "
        '{"web.signin_timeout": 1} (see write_bridge_config)',
    )
    config.addinivalue_line(
        "markers",
        "synapse_config(extra): homeserver.yaml keys merged over the stack's Synapse config; "
        "a callable gets the bridge's web.public_url (see LocalSynapse.extra_config)",
    )


#: What ``@pytest.mark.synapse_config`` takes: the keys, or a function of the bridge's
#: public URL that makes them (Synapse config that points at the bridge).
SynapseConfig = Mapping[str, Any] | Callable[[str], Mapping[str, Any]]


@pytest.fixture
async def stack(
    tmp_path: Path, database_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    """Synapse and the bridge, once on SQLite and once on the real PostgreSQL; a test
    marked ``@pytest.mark.bridge_config({...})`` gets those config keys set, and one
    marked ``@pytest.mark.synapse_config(...)`` those homeserver.yaml keys."""
    marker = request.node.get_closest_marker("bridge_config")
    overrides = marker.args[0] if marker is not None else None
    hs_port, as_port, web_port = free_ports(3)
    synapse_marker = request.node.get_closest_marker("synapse_config")
    synapse_extra: SynapseConfig = synapse_marker.args[0] if synapse_marker is not None else {}
    if callable(synapse_extra):
        synapse_extra = synapse_extra(f"http://127.0.0.1:{web_port}")
    config_path = write_bridge_config(
        tmp_path, hs_port, as_port, web_port, database_url, overrides=overrides
    )
    registration = generate_registration(config_path)
    homeserver = LocalSynapse(
        tmp_path / "synapse",
        port=hs_port,
        server_name="localhost",
        appservice_registrations=[registration],
        extra_config=synapse_extra,
    )
    await homeserver.start()
    result = Stack(tmp_path, homeserver, config_path)
    try:
        await result.start_bridge()
        yield result
    finally:
        for client in result.users:
            await client.close()
        await result.stop_bridge()
        await homeserver.stop()


async def terminate(process: asyncio.subprocess.Process, log: Path) -> None:
    """SIGTERM a ``python -m bridge`` child and check it stops cleanly; if it does not,
    fail with the end of its log (which holds the stacks its stop watchdog dumped)."""
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        # The bridge's own watchdog (STOP_LIMIT) ends it before this.
        await asyncio.wait_for(process.wait(), STOP_LIMIT + 20)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail("the bridge ignored SIGTERM:\n" + log_tail(log))
    assert process.returncode == 0, f"the bridge stopped with {process.returncode}:\n" + (
        log_tail(log)
    )


def log_tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
