"""A server fault while answering a publish offer is reported as the server's (code
``internal``, logged), not as the client's bad SDP; the client can try again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from bridge.media import MediaError
from bridge.media import publisher as publisher_module

from .helpers import Meeting, wait_for

Meetings = Callable[..., Meeting]


async def test_a_server_fault_is_internal_and_logged(
    meetings: Meetings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    meeting = meetings()
    alice, bob = meeting.join("alice"), meeting.join("bob")
    offer, sources = await alice.publish_offer()
    real = publisher_module.set_local_description

    async def no_sockets(*args: Any, **kwargs: Any) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(publisher_module, "set_local_description", no_sockets)
    with caplog.at_level(logging.ERROR), pytest.raises(MediaError) as fault:
        await alice.media.publish(offer, sources)
    assert fault.value.code == "internal"
    assert "Too many open files" not in str(fault.value)  # the user gets plain words
    assert any("Answering alice's offer failed" in r.getMessage() for r in caplog.records)

    async def refuses(*args: Any, **kwargs: Any) -> None:
        raise ValueError("None of DTLS setup roles match")

    monkeypatch.setattr(publisher_module, "set_local_description", refuses)
    with pytest.raises(MediaError) as bad:
        await alice.media.publish(offer, sources)
    assert bad.value.code == "bad_sdp"

    # Once the fault is gone, the same participant publishes and is received.
    monkeypatch.setattr(publisher_module, "set_local_description", real)
    await alice.publish()
    await wait_for(lambda: bob.frames_from("alice", "camera"))
