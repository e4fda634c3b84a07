"""The media tests' meetings (real aiortc peers on loopback), for the recorder's test
through the router."""

from __future__ import annotations

from tests.media.conftest import forwarding, meetings

__all__ = ["forwarding", "meetings"]
