"""Schema migrations, one module per version."""

from mautrix.util.async_db import UpgradeTable

upgrade_table = UpgradeTable(database_name="Visio Bridge")

from . import (  # noqa: E402,F401  (register themselves)
    v01_initial,
    v02_direct_rooms,
    v03_inbox,
    v04_personal_links,
    v05_meeting_host,
    v06_capture,
    v07_remote_time,
)
