"""The whole test suite, one command: ``python3 -m tests.devtools.checks``.

Installs what the suite needs (the virtual environment with the test extras; Debian's
chromium for the browser tests when run as root), makes sure the local PostgreSQL is
up, then runs ruff, mypy and pytest. Extra arguments go to pytest. CI runs exactly this
(``.ci/run``).
"""

from __future__ import annotations

import sys

from .bootstrap import ROOT, reexec_in_venv

if __name__ == "__main__":
    reexec_in_venv("tests.devtools.checks", "test")

import os
import shutil
import subprocess
from pathlib import Path

DEBIAN_PACKAGES = {"chromium": "chromium", "espeak-ng": "espeak-ng", "ffprobe": "ffmpeg"}


def step(title: str, command: list[str], **kwargs: object) -> None:
    print(f"==> {title}", flush=True)
    result = subprocess.run(command, cwd=ROOT, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        sys.exit(f"{title} failed (exit code {result.returncode})")


def ensure_debian_packages() -> None:
    missing = [pkg for tool, pkg in DEBIAN_PACKAGES.items() if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"Note: {', '.join(missing)} not installed; the tests that need it say so.")
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    step("apt-get update", ["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
    step(
        f"apt-get install {' '.join(missing)}",
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        env=env,
        stdout=subprocess.DEVNULL,
    )


def ensure_postgres() -> None:
    """Start the machine's PostgreSQL cluster if it is installed but down."""
    if shutil.which("pg_isready") is None:
        return
    ready = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False)
    if ready.returncode == 0 or shutil.which("pg_ctlcluster") is None:
        return
    versions = sorted(Path("/etc/postgresql").glob("*"))
    if not versions:
        return
    print("==> starting PostgreSQL", flush=True)
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1].name, "main", "start"],
        check=False,
    )


def main() -> None:
    ensure_debian_packages()
    ensure_postgres()
    python = sys.executable
    step("ruff check", [python, "-m", "ruff", "check", "."])
    step("ruff format --check", [python, "-m", "ruff", "format", "--check", "."])
    step("mypy", [python, "-m", "mypy"])
    step("pytest", [python, "-m", "pytest", *sys.argv[1:]])


if __name__ == "__main__":
    main()
