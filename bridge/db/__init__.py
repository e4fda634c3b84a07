"""Persistence: one module per table, migrations in upgrade/."""

from __future__ import annotations

from mautrix.util.async_db import Database

from .attendance import AttendanceTable
from .capture_file import CaptureFileTable
from .direct_room import DirectRoomTable
from .inbox import InboxEntry, InboxTable
from .meeting import MeetingTable
from .peer_door import PeerDoorTable
from .personal_link import PersonalLinkTable
from .transaction import TransactionTable
from .upgrade import upgrade_table

__all__ = [
    "AttendanceTable",
    "CaptureFileTable",
    "DirectRoomTable",
    "InboxEntry",
    "InboxTable",
    "MeetingTable",
    "PeerDoorTable",
    "PersonalLinkTable",
    "Storage",
    "TransactionTable",
    "upgrade_table",
]


class Storage:
    """The bridge's tables over one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.meetings = MeetingTable(db)
        self.attendance = AttendanceTable(db)
        self.transactions = TransactionTable(db)
        self.direct_rooms = DirectRoomTable(db)
        self.inbox = InboxTable(db)
        self.personal_links = PersonalLinkTable(db)
        self.peer_doors = PeerDoorTable(db)
        self.capture_files = CaptureFileTable(db)
