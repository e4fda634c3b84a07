"""The architecture's arrows, enforced: each package is imported in a fresh interpreter
and must not load what it may not depend on (docs/architecture.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_LISTENER_FORBIDS = (
    "aiortc",
    "mautrix",
    "aiohttp",
    "bridge.matrix",
    "bridge.media",
    "bridge.web",
    "bridge.capture",
    "bridge.federation",
)

FORBIDDEN = {
    "bridge.meeting": ("aiortc", "mautrix", "aiohttp", "bridge.web", "bridge.matrix"),
    "bridge.media": ("mautrix", "bridge.web", "bridge.matrix"),
    "bridge.web": ("aiortc",),
    "bridge.auth": ("aiortc", "bridge.web", "bridge.matrix", "bridge.media"),
    "bridge.livekit": ("aiortc", "bridge.matrix", "bridge.media"),
    "bridge.federation": (
        "aiortc",
        "mautrix",
        "aiohttp",
        "bridge.matrix",
        "bridge.media",
        "bridge.web",
    ),
    # When capture runs and what becomes of its files; the recorder and transcriber it
    # drives are handed to it, so it loads no media library.
    "bridge.capture": (
        "aiortc",
        "av",
        "mautrix",
        "aiohttp",
        "bridge.matrix",
        "bridge.media",
        "bridge.web",
        "bridge.recording",
        "bridge.transcription",
    ),
    # In-process listeners: they know the meeting through the media sink interface only.
    "bridge.recording": _LISTENER_FORBIDS,
    "bridge.transcription": _LISTENER_FORBIDS,
}

# Imports every module of one package (not just its __init__), then prints what loaded.
_PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for module in pkgutil.walk_packages(getattr(package, "__path__", []), package.__name__ + "."):
    importlib.import_module(module.name)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(package: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, package],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    modules: list[str] = json.loads(result.stdout)
    return modules


def offending(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        module
        for module in modules
        if any(module == name or module.startswith(name + ".") for name in forbidden)
    )


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_loads_nothing_it_may_not_depend_on(package: str) -> None:
    modules = loaded_by(package)
    assert package in modules
    assert offending(modules, FORBIDDEN[package]) == []


def test_the_probe_sees_what_a_package_loads() -> None:
    # The wiring imports everything, so the same check must flag it: the test above
    # cannot pass merely because the probe loads nothing.
    modules = loaded_by("bridge.context")
    assert "aiortc" in offending(modules, ("aiortc",))
    assert offending(modules, ("bridge.web",))
