"""Stand-ins for the media layer and for a door, recording what the meeting asks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bridge.meeting.attendee import Dismissal
from bridge.meeting.events import MeetingEvent
from bridge.meeting.media import (
    MediaError,
    MediaEvent,
    MediaSink,
    SendOffer,
    TrunkLimits,
    TrunkListener,
)


@dataclass
class FakeParticipantMedia:
    participant_id: str
    send_offer: SendOffer
    router: FakeRouter
    published: list[Mapping[str, str]] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    closed_with: str | None = None

    candidates: list[tuple[str, str]] = field(default_factory=list)
    receiving: dict[str, bool] = field(default_factory=dict)

    async def publish(
        self, offer_sdp: str, sources: Mapping[str, str], data_channels: bool = False
    ) -> str:
        if offer_sdp == "bad":
            raise MediaError("The offer is bad.")
        self.published.append(dict(sources))
        return f"answer to {offer_sdp}"

    def set_receiving(self, track_id: str, receiving: bool) -> None:
        self.receiving[track_id] = receiving

    async def add_candidate(self, connection: str, candidate: str) -> bool:
        self.candidates.append((connection, candidate))
        return True

    async def accept_answer(self, answer_sdp: str) -> None:
        self.answers.append(answer_sdp)

    async def close(self, reason: str = "left") -> None:
        if self.closed_with is None:
            self.closed_with = reason
            self.router.participants.pop(self.participant_id, None)


@dataclass
class FakeRouter:
    meeting_id: str
    on_event: Callable[[MediaEvent], None]
    participants: dict[str, FakeParticipantMedia] = field(default_factory=dict)
    trunks: dict[str, FakeTrunk] = field(default_factory=dict)
    sinks: list[MediaSink] = field(default_factory=list)
    closed: bool = False

    #: Trunks of every router sharing it, by trunk id: a satellite's trunk finds the
    #: host's end of it there when it gets the answer.
    exchange: dict[str, list[FakeTrunk]] = field(default_factory=dict)

    def add_trunk(self, trunk_id: str, listener: TrunkListener, limits: TrunkLimits) -> FakeTrunk:
        trunk = FakeTrunk(trunk_id, listener, self)
        self.trunks[trunk_id] = trunk
        self.exchange.setdefault(trunk_id, []).append(trunk)
        return trunk

    def add_participant(self, participant_id: str, send_offer: SendOffer) -> FakeParticipantMedia:
        if participant_id in self.participants:
            raise MediaError(f"Participant {participant_id} already has media here.")
        media = FakeParticipantMedia(participant_id, send_offer, self)
        self.participants[participant_id] = media
        return media

    def add_sink(self, sink: MediaSink) -> None:
        if sink not in self.sinks:
            self.sinks.append(sink)

    def remove_sink(self, sink: MediaSink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)

    async def close(self) -> None:
        self.closed = True
        self.sinks.clear()
        for trunk in list(self.trunks.values()):
            await trunk.close("router closed")

    def stats(self) -> dict[str, int]:
        return {"participants": len(self.participants)}


@dataclass(eq=False)
class FakeTrunk:
    """A trunk whose state channel is wired to another fake trunk by :meth:`connect`
    (messages arrive on the next loop turns, in order); it carries no media."""

    trunk_id: str
    listener: TrunkListener
    router: FakeRouter
    other: FakeTrunk | None = None
    sent: list[str] = field(default_factory=list)
    remotes: list[str] = field(default_factory=list)
    closed_with: str | None = None

    async def offer(self) -> str:
        return f"offer {self.trunk_id}"

    async def answer(self, offer_sdp: str) -> str:
        if not offer_sdp.startswith("offer "):
            raise MediaError("That is not a trunk offer.")
        return f"answer {self.trunk_id}"

    async def accept_answer(self, answer_sdp: str) -> None:
        if not answer_sdp.startswith("answer "):
            raise MediaError("That is not a trunk answer.")
        ends = [t for t in self.router.exchange.get(self.trunk_id, []) if t is not self]
        if ends and ends[-1].closed_with is None:
            self.connect(ends[-1])

    def connect(self, other: FakeTrunk) -> None:
        """Both ends are up: their listeners hear ``trunk_open``."""
        self.other, other.other = other, self
        loop = asyncio.get_running_loop()
        loop.call_soon(self.listener.trunk_open)
        loop.call_soon(other.listener.trunk_open)

    def add_remote(self, participant_id: str) -> FakeParticipantMedia:
        if participant_id in self.router.participants:
            raise MediaError(f"Participant {participant_id} already has media here.")
        self.remotes.append(participant_id)
        media = FakeParticipantMedia(participant_id, self._no_offer, self.router)
        self.router.participants[participant_id] = media
        return media

    async def _no_offer(self, sdp: str) -> None:
        raise AssertionError("nobody behind a trunk gets offers")

    def send_state(self, message: str) -> None:
        if self.closed_with is not None or self.other is None:
            raise MediaError("The trunk is not open.")
        self.sent.append(message)
        other = self.other
        asyncio.get_running_loop().call_soon(
            lambda: other.closed_with is None and other.listener.trunk_state(message)
        )

    async def close(self, reason: str = "left") -> None:
        if self.closed_with is not None:
            return
        self.closed_with = reason
        self.router.trunks.pop(self.trunk_id, None)
        other = self.other
        if other is not None and other.closed_with is None:
            asyncio.get_running_loop().call_soon(other.listener.trunk_closed, "connection lost")


class FakeMedia:
    """A media service whose routers forward nothing and remember everything."""

    def __init__(self, exchange: dict[str, list[FakeTrunk]] | None = None) -> None:
        self.routers: list[FakeRouter] = []
        self.exchange = exchange if exchange is not None else {}

    def open_router(self, meeting_id: str, on_event: Callable[[MediaEvent], None]) -> FakeRouter:
        router = FakeRouter(meeting_id, on_event, exchange=self.exchange)
        self.routers.append(router)
        return router


class RecordingAttendee:
    """A door that keeps what the meeting tells it."""

    def __init__(self) -> None:
        self.events: list[MeetingEvent] = []
        self.offers: list[str] = []
        self.dismissals: list[Dismissal] = []

    def deliver(self, event: MeetingEvent) -> None:
        self.events.append(event)

    async def send_offer(self, sdp: str) -> None:
        self.offers.append(sdp)

    async def dismiss(self, dismissal: Dismissal) -> None:
        self.dismissals.append(dismissal)

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event in self.events]
