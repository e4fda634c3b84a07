"""How a meeting reaches one participant: the one thing every door implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .events import MeetingEvent


@dataclass(frozen=True, slots=True)
class Dismissal:
    """Why the meeting ends someone's presence: a code and a sentence for them.

    Codes: ``meeting_ended`` (the meeting ended for everyone), ``replaced`` (the same
    person joined again elsewhere), ``reconnect`` (their media was lost, or the server
    restarts: join again), ``unauthorized`` (they may no longer be in it: they left the
    room, or were kicked or banned).
    """

    code: str
    message: str


MEETING_ENDED = Dismissal("meeting_ended", "The meeting has ended.")
REPLACED = Dismissal("replaced", "You joined this meeting again from another window or device.")
RESTARTING = Dismissal("reconnect", "The meeting server is restarting.")
NOT_A_MEMBER = Dismissal(
    "unauthorized", "You are no longer a member of the meeting's room, so you left the meeting."
)


class Attendee(Protocol):
    """One participant's connection to the meeting, as the door that admitted them sees it.

    The meeting calls these; none may block the meeting: ``deliver`` queues, and the
    coroutines return once the message is on its way.
    """

    def deliver(self, event: MeetingEvent) -> None:
        """Something changed in the meeting (see :mod:`bridge.meeting.events`)."""
        ...

    async def send_offer(self, sdp: str) -> None:
        """A server offer for what the participant receives; they answer with
        :meth:`bridge.meeting.live.Participant.accept_answer`."""
        ...

    async def dismiss(self, dismissal: Dismissal) -> None:
        """The participant is out of the meeting; tell them why and close the door."""
        ...
