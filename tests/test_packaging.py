"""The wheel holds the bridge and nothing else: no tests, benchmarks or demo code.

Slowish (seconds): it copies the source tree and builds a wheel with pip, without build
isolation, so the build requirements of ``pyproject.toml`` must be installed in this
environment (skipped where they are not, failed under ``CI=true``). The copy leaves
the checkout untouched and keeps a stale ``build/`` or ``*.egg-info`` out of the wheel.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from packaging.requirements import Requirement

from tests.conftest import require_or_skip

ROOT = Path(__file__).resolve().parent.parent

#: Files the wheel must contain, so that a wheel without the bridge fails too.
REQUIRED = ("bridge/__main__.py", "bridge/example-config.yaml", "bridge/web/static/meeting.html")

#: Names of test and demo modules (a package folder or a module file's stem).
FORBIDDEN_MODULES = ("*synapse*", "*synthetic*", "demo*", "checks*", "bootstrap*")
FORBIDDEN_FOLDERS = ("tests", "bench", "devtools")
MODULE_SUFFIXES = (".py", ".pyc", ".pyi", ".so", ".pyd")

#: Not copied: build outputs and caches (anywhere), the environment and VCS (at the root).
SKIP_ANYWHERE = ("__pycache__", "*.egg-info", ".pytest_cache", ".mypy_cache", ".ruff_cache")
SKIP_AT_ROOT = (".git", ".venv", "build", "dist", ".demo")


def missing_build_requirements() -> list[str]:
    """The ``[build-system] requires`` of pyproject.toml not met by this environment."""
    with open(ROOT / "pyproject.toml", "rb") as file:
        requires: list[str] = tomllib.load(file)["build-system"]["requires"]
    missing = []
    for spec in requires:
        requirement = Requirement(spec)
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{spec} (not installed)")
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            missing.append(f"{spec} (have {version})")
    return missing


def copy_source(target: Path) -> Path:
    def ignore(directory: str, names: list[str]) -> Iterable[str]:
        skipped = {n for n in names if any(fnmatch.fnmatchcase(n, p) for p in SKIP_ANYWHERE)}
        if Path(directory).resolve() == ROOT:
            skipped.update(n for n in names if n in SKIP_AT_ROOT)
        return skipped

    shutil.copytree(ROOT, target, ignore=ignore, symlinks=True)
    return target


def build_wheel(tmp_path: Path) -> Path:
    missing = missing_build_requirements()
    require_or_skip(not missing, "the build requirements " + ", ".join(missing))
    source = copy_source(tmp_path / "source")
    out = tmp_path / "wheel"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--quiet",
            "--wheel-dir",
            str(out),
            str(source),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout}\n{result.stderr}"
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_holds_the_bridge_and_no_test_or_demo_code(tmp_path: Path) -> None:
    """Slowish: builds the wheel (a few seconds)."""
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = [name for name in archive.namelist() if not name.endswith("/")]

    for required in REQUIRED:
        assert required in names, f"{wheel.name} lacks {required}"

    top_level = {PurePosixPath(name).parts[0] for name in names}
    strays = {top for top in top_level if top != "bridge" and not top.endswith(".dist-info")}
    assert not strays, f"{wheel.name} has top-level entries besides bridge/: {sorted(strays)}"
    assert len([top for top in top_level if top.endswith(".dist-info")]) == 1, top_level

    offending = []
    for name in names:
        path = PurePosixPath(name)
        folders = path.parts[:-1]
        modules = [*folders]
        if path.suffix in MODULE_SUFFIXES:
            modules.append(path.name.split(".", 1)[0])
        if any(folder in FORBIDDEN_FOLDERS for folder in folders) or any(
            fnmatch.fnmatchcase(module.lower(), pattern)
            for module in modules
            for pattern in FORBIDDEN_MODULES
        ):
            offending.append(name)
    assert not offending, f"{wheel.name} contains test or demo code: {offending}"
