"""The container's entry script, run outside Docker (no engine on these machines)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

from tests.harness.synapse import free_ports


def entry(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.docker"],
        env={**os.environ, "VISIO_DATA": str(data)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_first_run_writes_config_second_registration_then_runs(tmp_path: Path) -> None:
    first = entry(tmp_path)
    assert first.returncode == 0, first.stderr
    config = tmp_path / "config.yaml"
    assert "Edit homeserver.address" in first.stdout and config.exists()
    assert config.stat().st_mode & 0o077 == 0
    yaml = YAML()
    data = yaml.load(config.read_text())
    assert data["appservice"]["database"] == f"sqlite:{tmp_path}/visio-bridge.db"
    assert data["web"]["hostname"] == "0.0.0.0"

    # The operator edits it as the message says.
    hs_port, as_port, web_port = free_ports(3)
    data["homeserver"]["address"] = f"http://127.0.0.1:{hs_port}"
    data["homeserver"]["domain"] = "agency.test"
    data["appservice"]["port"] = as_port
    data["appservice"]["hostname"] = "127.0.0.1"
    data["web"]["port"] = web_port
    data["web"]["hostname"] = "127.0.0.1"
    data["web"]["public_url"] = "https://visio.agency.test"
    data["bridge"]["permissions"] = {"agency.test": "user"}
    with config.open("w") as stream:
        yaml.dump(data, stream)

    second = entry(tmp_path)
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "registration.yaml").exists()
    assert "app_service_config_files" in second.stdout

    # Third run: the bridge itself starts; no homeserver listens, so it says so.
    third = entry(tmp_path)
    assert third.returncode == 14
    assert "could not be reached" in third.stderr + third.stdout


def test_unwritable_data_folder_is_reported(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        data = Path("/proc/visio-no-such-dir")
    else:
        data = tmp_path / "ro"
        data.mkdir(mode=0o500)
    result = entry(data)
    assert result.returncode != 0
    assert "is not writable" in result.stderr
