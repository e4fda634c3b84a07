"""Set up the project's virtual environment, using nothing but the standard library.

The README's two commands start here on a fresh machine, before anything is installed:
they make ``.venv`` (once), install the project with the extras they need, then run
their real work with the virtual environment's Python.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
MIN_PYTHON = (3, 11)


def venv_python() -> Path:
    return VENV / "bin" / "python"


def inside_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def _stamp(extras: str) -> str:
    """Changes when what would be installed changes: the project file and the extras."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode())
    return digest.hexdigest()


def ensure_venv(extras: str) -> Path:
    """Create .venv if needed and install the project with ``extras``; return its python."""
    if sys.version_info < MIN_PYTHON:
        sys.exit(
            f"Visio Bridge needs Python {'.'.join(map(str, MIN_PYTHON))} or newer; "
            f"this is {sys.version.split()[0]}."
        )
    if not venv_python().exists():
        print(f"Creating a virtual environment in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp_file = VENV / f".installed-{extras or 'base'}"
    stamp = _stamp(extras)
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return venv_python()
    print(f"Installing Visio Bridge{f' [{extras}]' if extras else ''} ...", flush=True)
    target = f".[{extras}]" if extras else "."
    pip = [str(venv_python()), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True, cwd=ROOT)
    subprocess.run([*pip, "install", "-e", target], check=True, cwd=ROOT)
    stamp_file.write_text(stamp)
    return venv_python()


def reexec_in_venv(module: str, extras: str) -> None:
    """Re-run ``python -m module`` with the virtual environment's Python, unless already
    inside it."""
    if inside_venv():
        return
    python = ensure_venv(extras)
    os.chdir(ROOT)
    os.execv(str(python), [str(python), "-m", module, *sys.argv[1:]])
