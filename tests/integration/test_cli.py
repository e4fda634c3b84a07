"""`python -m bridge` as an operator runs it: startup, the ready line, SIGTERM, refusals."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from bridge.__main__ import STOP_LIMIT
from tests.harness.synapse import LocalSynapse, free_ports
from tests.integration.conftest import generate_registration, terminate, write_bridge_config


async def run_bridge(config: Path, *extra: str, within: float = 30) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "-c",
        str(config),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=config.parent,
    )
    output, _ = await asyncio.wait_for(process.communicate(), within)
    assert process.returncode is not None
    return process.returncode, output.decode()


def edit_config(path: Path, section: str, key: str, value: object) -> None:
    yaml = YAML()
    data = yaml.load(path.read_text())
    data[section][key] = value
    with path.open("w") as stream:
        yaml.dump(data, stream)


class Setup:
    def __init__(self, directory: Path) -> None:
        self.hs_port, self.as_port, self.web_port = free_ports(3)
        self.config = write_bridge_config(
            directory, self.hs_port, self.as_port, self.web_port, f"sqlite:{directory}/b.db"
        )
        self.registration = generate_registration(self.config, cli=True)
        self.homeserver = LocalSynapse(
            directory / "synapse",
            port=self.hs_port,
            server_name="localhost",
            appservice_registrations=[self.registration],
        )


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    result = Setup(tmp_path)
    await result.homeserver.start()
    try:
        yield result
    finally:
        await result.homeserver.stop()


async def test_runs_logs_ready_and_stops_cleanly_on_sigterm(setup: Setup) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "-c",
        str(setup.config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=setup.config.parent,
    )
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(30):
        while True:
            line = (await process.stdout.readline()).decode()
            assert line, "the bridge exited before it was ready:\n" + "".join(lines)
            lines.append(line)
            if "Visio Bridge ready" in line:
                break
    ready = lines[-1]
    assert f"http://127.0.0.1:{setup.as_port}" in ready
    assert f"http://127.0.0.1:{setup.web_port}" in ready
    # The homeserver pinged the bridge, so it delivers to it at once.
    async with asyncio.timeout(10):
        while not any("reached the appservice listener" in line for line in lines):
            lines.append((await process.stdout.readline()).decode())
    process.send_signal(signal.SIGTERM)
    rest, _ = await asyncio.wait_for(process.communicate(), STOP_LIMIT + 20)
    assert process.returncode == 0, rest.decode()
    # Secrets stay out of the logs.
    text = "".join(lines) + rest.decode()
    yaml = YAML(typ="safe")
    config = yaml.load(setup.config.read_text())
    assert config["appservice"]["as_token"] not in text
    assert config["appservice"]["hs_token"] not in text


async def test_refuses_an_unreachable_homeserver(tmp_path: Path) -> None:
    setup = Setup(tmp_path)  # Synapse never started
    code, output = await run_bridge(setup.config)
    assert code == 14
    assert "could not be reached" in output and "homeserver.address" in output


async def test_refuses_a_rejected_as_token(setup: Setup) -> None:
    edit_config(setup.config, "appservice", "as_token", "not-the-registered-token")
    code, output = await run_bridge(setup.config)
    assert code == 15
    assert "did not accept the as_token" in output


async def test_refuses_a_bad_database_url(setup: Setup) -> None:
    edit_config(setup.config, "appservice", "database", "postgres://nobody@127.0.0.1:1/none")
    code, output = await run_bridge(setup.config)
    assert code == 13
    assert "Could not open the database" in output


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("appservice", "port", "eighty", "Invalid config value appservice.port"),
        ("homeserver", "domain", "example.com", "still has the example value"),
        ("appservice", "database", "mysql://x", "Invalid config value appservice.database"),
    ],
)
async def test_refuses_invalid_values_naming_the_key(
    tmp_path: Path, section: str, key: str, value: object, expected: str
) -> None:
    setup = Setup(tmp_path)
    edit_config(setup.config, section, key, value)
    code, output = await run_bridge(setup.config)
    assert code == 11
    assert expected in output
    assert "Traceback" not in output


async def test_refuses_a_missing_config_file(tmp_path: Path) -> None:
    code, output = await run_bridge(tmp_path / "nope.yaml")
    assert code == 10 and "no config file" in output


async def test_no_update_flag_keeps_a_read_only_config(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    yaml = YAML()
    edit_config(setup.config, "appservice", "port", "eighty")  # stops it right after loading
    with setup.config.open() as stream:
        data = yaml.load(stream)
    del data["bridge"]["command_prefix"]
    with setup.config.open("w") as stream:
        yaml.dump(data, stream)
    before = setup.config.read_text()
    os.chmod(setup.config, 0o444)
    code, _ = await run_bridge(setup.config, "--no-update")
    assert code == 11
    assert setup.config.read_text() == before


async def test_refuses_a_config_path_that_is_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "config.yaml"
    folder.mkdir()
    code, output = await run_bridge(folder)
    assert code == 10 and "is a folder" in output
    assert "Traceback" not in output


async def test_refuses_a_generated_link_secret_that_could_not_be_kept(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    edit_config(setup.config, "web", "link_secret", "generate")
    code, output = await run_bridge(setup.config, "--no-update")
    assert code == 11 and "web.link_secret" in output and "--no-update" in output
    assert "Traceback" not in output


async def test_secrets_stay_out_of_debug_logs(setup: Setup) -> None:
    """At DEBUG, mautrix logs request bodies: the personal link the bot sends, and the
    tokens, must still never reach the log."""
    yaml = YAML()
    data = yaml.load(setup.config.read_text())
    data["logging"]["loggers"]["mau"]["level"] = "DEBUG"
    data["logging"]["loggers"]["visio"]["level"] = "DEBUG"
    data["logging"]["root"]["level"] = "DEBUG"
    with setup.config.open("w") as stream:
        yaml.dump(data, stream)
    log_path = setup.config.parent / "bridge.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge",
            "-c",
            str(setup.config),
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            cwd=setup.config.parent,
        )
        try:
            async with asyncio.timeout(30):
                while "Visio Bridge ready" not in log_path.read_text():  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            bot = f"@visio:{setup.homeserver.server_name}"
            alice = await setup.homeserver.client_for("alice")
            async with alice:
                room_id = await alice.create_room(name="Secrets")
                await alice.invite(room_id, bot)
                await alice.wait_for_message(room_id, lambda e: "Hello" in str(e["content"]))
                await alice.send_text(room_id, "!visio start Secret")
                await alice.wait_for_message(room_id, lambda e: "started" in str(e["content"]))
                await alice.send_text(room_id, "!visio link")
                direct = await alice.wait_for_invite()
                await alice.join(direct)
                message = await alice.wait_for_message(
                    direct, lambda e: "#token=" in e["content"].get("body", ""), anywhere=True
                )
                token = message["content"]["body"].split("#token=", 1)[1].split()[0]
        finally:
            await terminate(process, log_path)
    text = log_path.read_text()
    assert "req #" in text  # mautrix did log its requests at DEBUG
    config = yaml.load(setup.config.read_text())
    for secret in (token, config["appservice"]["as_token"], config["appservice"]["hs_token"]):
        assert secret not in text
    assert "#token=<redacted>" in text  # the link's message was logged, without the token
