"""Stand-ins for the media layer and for a door, recording what the meeting asks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bridge.meeting.attendee import Dismissal
from bridge.meeting.events import MeetingEvent
from bridge.meeting.media import MediaError, MediaEvent, SendOffer


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
    closed: bool = False

    def add_participant(self, participant_id: str, send_offer: SendOffer) -> FakeParticipantMedia:
        if participant_id in self.participants:
            raise MediaError(f"Participant {participant_id} already has media here.")
        media = FakeParticipantMedia(participant_id, send_offer, self)
        self.participants[participant_id] = media
        return media

    async def close(self) -> None:
        self.closed = True

    def stats(self) -> dict[str, int]:
        return {"participants": len(self.participants)}


class FakeMedia:
    """A media service whose routers forward nothing and remember everything."""

    def __init__(self) -> None:
        self.routers: list[FakeRouter] = []

    def open_router(self, meeting_id: str, on_event: Callable[[MediaEvent], None]) -> FakeRouter:
        router = FakeRouter(meeting_id, on_event)
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
