"""The livekit-client harness itself: the pinned npm tarball and the page around it.

Later tests trust that the browser runs exactly livekit-client 2.22.3 (Element Call
0.26.1's); these checks make that trust earned: the cache is used, a tarball with
another digest is refused, and the page loads that version in Chromium.
"""

from __future__ import annotations

import base64
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.async_api import Browser
from playwright.async_api import Error as PlaywrightError

from tests.harness import npm
from tests.harness.npm import LIVEKIT_CLIENT, NpmError, npm_package, require_npm
from tests.harness.synapse import free_port
from tests.integration.browser import browser  # noqa: F401 - fixture
from tests.integration.livekit_browser import (
    livekit_client_js,  # noqa: F401 - fixture
    livekit_site_url,  # noqa: F401 - fixture
    lk_connect,
    lk_outbound_stats,
    lk_state,
    open_livekit_page,
)

pytestmark = pytest.mark.integration

NAME, VERSION, INTEGRITY = LIVEKIT_CLIENT
WRONG_INTEGRITY = "sha512-" + base64.b64encode(hashlib.sha512(b"not it").digest()).decode()


@pytest.fixture
def pack_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A fresh, empty cache, and the ``npm pack`` runs made into it."""
    require_npm()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls: list[str] = []
    real_pack = npm._npm_pack

    def counting_pack(spec: str, destination: Path) -> Path:
        calls.append(spec)
        return real_pack(spec, destination)

    monkeypatch.setattr(npm, "_npm_pack", counting_pack)
    return calls


def test_fetches_once_then_uses_the_cache(pack_calls: list[str], tmp_path: Path) -> None:
    package = npm_package(NAME, VERSION, INTEGRITY)
    assert pack_calls == [f"{NAME}@{VERSION}"]
    assert package == tmp_path / "cache" / "visio-bridge" / "npm" / f"{NAME}-{VERSION}" / "package"
    assert json.loads((package / "package.json").read_text())["version"] == VERSION
    assert (package / "dist" / "livekit-client.umd.js").is_file()

    assert npm_package(NAME, VERSION, INTEGRITY) == package
    assert len(pack_calls) == 1, "the second call ran npm instead of using the cache"

    # The cache also holds the pin: a different integrity is refused without npm.
    with pytest.raises(NpmError, match="cached tarball"):
        npm_package(NAME, VERSION, WRONG_INTEGRITY)
    assert len(pack_calls) == 1


def test_refuses_a_tarball_with_another_digest(pack_calls: list[str], tmp_path: Path) -> None:
    with pytest.raises(NpmError, match="refusing"):
        npm_package(NAME, VERSION, WRONG_INTEGRITY)
    assert pack_calls == [f"{NAME}@{VERSION}"]
    cache = tmp_path / "cache" / "visio-bridge" / "npm"
    # Nothing refused is kept: no package, no leftover scratch folder.
    assert sorted(path.name for path in cache.iterdir()) == [f"{NAME}-{VERSION}.lock"]


def test_refuses_malformed_integrity(pack_calls: list[str]) -> None:
    for integrity in ("", "sha1-AAAA", "sha512-not*base64", "sha512-" + "A" * 8):
        with pytest.raises(ValueError, match="integrity"):
            npm_package(NAME, VERSION, integrity)
    assert pack_calls == []


def test_concurrent_callers_fetch_once(pack_calls: list[str]) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: npm_package(NAME, VERSION, INTEGRITY), range(3)))
    assert len(set(results)) == 1
    assert len(pack_calls) == 1


def test_scoped_names_stay_in_one_folder() -> None:
    assert npm._entry_name("@element-hq/element-call-embedded", "0.26.1") == (
        "@element-hq+element-call-embedded-0.26.1"
    )
    for name, version in (("..", "1"), ("a", "../b"), ("a\\b", "1")):
        with pytest.raises(ValueError):
            npm._entry_name(name, version)


async def test_page_loads_livekit_client(
    browser: Browser,  # noqa: F811 - fixture
    livekit_client_js: Path,  # noqa: F811 - fixture
    livekit_site_url: str,  # noqa: F811 - fixture
) -> None:
    assert livekit_client_js.name == "livekit-client.umd.js"
    person = await open_livekit_page(browser, livekit_site_url)
    try:
        assert await person.page.evaluate("() => window.LivekitClient.version") == VERSION
        state = await lk_state(person)
        assert state["version"] == VERSION
        assert state["connectionState"] == "disconnected"
        # json.dumps: the state stays plain JSON, as the docstring promises.
        json.dumps(state)
        # Element Call's room options name only things this build has.
        assert await person.page.evaluate(
            """() => {
              const options = window.lk.elementCallRoomOptions();
              new window.LivekitClient.Room(options);
              return [options.publishDefaults.audioPreset.maxBitrate,
                      options.publishDefaults.backupCodec.encoding.maxBitrate];
            }"""
        ) == [48_000, 1_700_000]
        assert [line for line in person.console if line.startswith("pageerror")] == []
    finally:
        await person.close()


async def test_connect_failure_is_reported(
    browser: Browser,  # noqa: F811 - fixture
    livekit_site_url: str,  # noqa: F811 - fixture
) -> None:
    """With nothing listening, connect() rejects and the page records why."""
    person = await open_livekit_page(browser, livekit_site_url)
    try:
        with pytest.raises(PlaywrightError, match="could not establish signal connection"):
            await lk_connect(person, f"ws://127.0.0.1:{free_port()}", "not-a-token")
        state = await lk_state(person)
        assert state["errors"] and state["errors"][0].startswith("connect: ConnectionError")
        assert state["disconnected"]["reasonName"] == "JOIN_FAILURE"
        assert state["connectionState"] == "disconnected"
        assert await person.page.evaluate("() => window.lk.stats()") == {}
        assert await lk_outbound_stats(person) == {
            "bytesSent": {"audio": 0, "video": 0},
            "tracks": {},
        }
    finally:
        await person.close()
