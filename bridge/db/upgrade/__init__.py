"""Schema migrations, one module per version."""

from mautrix.util.async_db import UpgradeTable

upgrade_table = UpgradeTable(database_name="Visio Bridge")

from . import v01_initial, v02_direct_rooms  # noqa: E402,F401  (register themselves)
