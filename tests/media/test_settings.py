"""MediaSettings validation."""

from __future__ import annotations

import pytest
from aiortc import RTCIceServer

from bridge.media import MediaSettings


def test_defaults_use_no_ice_server() -> None:
    settings = MediaSettings()
    assert settings.ice_servers == ()
    assert settings.host_addresses is None


def test_lists_become_tuples() -> None:
    settings = MediaSettings(
        ice_servers=[RTCIceServer("stun:127.0.0.1:3478")], host_addresses=["127.0.0.1", "::1"]
    )
    assert settings.host_addresses == ("127.0.0.1", "::1")
    assert len(settings.ice_servers) == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"host_addresses": ["localhost"]},
        {"host_addresses": "127.0.0.1"},
        {"video_codecs": ["VP9"]},
        {"video_codecs": []},
        {"max_sdp_bytes": 0},
        {"keyframe_request_interval": 0},
        {"speaking_level_dbov": 200},
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MediaSettings(**overrides)  # type: ignore[arg-type]
