"""Operators see the bridge: /metrics on the appservice listener, never on the public one."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import eventually
from tests.integration.test_signaling import Meet, meet  # noqa: F401 - the fixture


async def scrape(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        text = await response.text()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[sample.name + (f"{{{label}}}" if label else "")] = sample.value
    return values


async def test_metrics_count_meetings_media_and_refusals(meet: Meet) -> None:  # noqa: F811
    config = meet.stack.config
    metrics_url = f"http://127.0.0.1:{config['appservice.port']}/metrics"
    alice, _ = await meet.joined("alice")
    await meet.joined("bob")
    await alice.publish()
    refused = meet.client()
    reply = await refused.join({"kind": "link", "token": "forged.token"})
    assert reply["code"] == "unauthorized"

    async def frames_flow() -> bool:
        values = await scrape(metrics_url)
        return values.get("visio_frames_forwarded_total", 0) > 10

    await eventually(frames_flow, within=20)
    values = await scrape(metrics_url)
    assert values["visio_meetings_live"] == 1
    assert values["visio_participants"] == 2
    assert values["visio_routers"] == 1
    assert values["visio_published_tracks"] == 2  # alice's camera and microphone
    assert values["visio_subscriptions"] == 2  # ... forwarded to bob
    assert values["visio_frames_received_total"] >= values["visio_frames_forwarded_total"] / 2
    assert values["visio_join_to_first_frame_seconds_count"] >= 1
    assert values["visio_transactions_total"] >= 1
    assert values["visio_events_handled_total"] >= 1
    assert values["visio_inbox_pending"] >= 0
    assert values["visio_signin_refusals_total{reason=unauthorized}"] == 1

    # Never on the public listener.
    public = str(config["web.public_url"])
    async with aiohttp.ClientSession() as http, http.get(f"{public}/metrics") as response:
        assert response.status == 404
