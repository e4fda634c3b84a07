"""The container's entry point: ``python -m bridge.docker``.

Everything lives in the data folder (``/data``, or $VISIO_DATA): the first run writes a
config there and says what to edit; the next writes the registration for the
homeserver; from then on the bridge runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ruamel.yaml import YAML

from .config import example_config_text


def data_dir() -> Path:
    return Path(os.environ.get("VISIO_DATA", "/data"))


def write_first_config(path: Path) -> None:
    """The example config, with what a container needs: listen on all interfaces, keep
    the database in the data folder."""
    yaml = YAML()
    yaml.indent(4)
    data = yaml.load(example_config_text())
    data["appservice"]["hostname"] = "0.0.0.0"
    data["appservice"]["database"] = f"sqlite:{path.parent / 'visio-bridge.db'}"
    data["web"]["hostname"] = "0.0.0.0"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as stream:
        yaml.dump(data, stream)


def main() -> None:
    data = data_dir()
    config = data / "config.yaml"
    registration = data / "registration.yaml"
    if not os.access(data, os.W_OK):
        sys.exit(f"{data} is not writable by uid {os.getuid()}; mount a volume it can write.")
    python = sys.executable
    if not config.exists():
        write_first_config(config)
        print(
            f"Wrote {config}. Edit homeserver.address, homeserver.domain, "
            "appservice.address, web.public_url and bridge.permissions, then start the "
            "container again to generate the registration."
        )
        sys.exit(0)
    if not registration.exists():
        os.execv(
            python,
            [python, "-m", "bridge", "-g", "-c", str(config), "-r", str(registration)],
        )
    os.execv(python, [python, "-m", "bridge", "-c", str(config), *sys.argv[1:]])


if __name__ == "__main__":
    main()
