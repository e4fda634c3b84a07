"""The bridge context: the one object that owns config, database, appservice and web.

Nothing in the bridge is a module-level singleton; everything that needs a part gets it
from here, so two bridges (two agencies) can run in one process.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from mautrix.appservice import IntentAPI
from mautrix.appservice.state_store.asyncpg import PgASStateStore
from mautrix.client.state_store.asyncpg import PgStateStore
from mautrix.errors import MatrixConnectionError, MatrixRequestError, MUnknownToken
from mautrix.util.async_db import Database
from yarl import URL

from . import __version__
from .clock import Clock, SystemClock
from .config import Config
from .db import Storage, upgrade_table
from .matrix.appservice import BridgeAppService
from .matrix.dispatch import RoomQueues
from .matrix.handler import MatrixHandler
from .meeting.meetings import Meetings
from .web.server import WebServer

log = logging.getLogger("visio.bridge")


class StartupError(Exception):
    """The bridge cannot start; the message is one sentence for the operator."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# Exit codes, distinct so deployment tooling can tell the causes apart.
EXIT_CONFIG = 11
EXIT_DATABASE = 13
EXIT_HOMESERVER_UNREACHABLE = 14
EXIT_TOKEN_REJECTED = 15
EXIT_LISTEN = 16

PRUNE_INTERVAL_S = 24 * 3600


class Bridge:
    """One running bridge: database, appservice listener, web listener, meetings."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.log = log
        self.db = Database.create(
            config["appservice.database"],
            upgrade_table=upgrade_table,
            log=logging.getLogger("visio.db"),
        )
        self.state_db = Database.create(
            config["appservice.database"],
            upgrade_table=PgStateStore.upgrade_table,
            log=logging.getLogger("visio.db.state"),
        )
        self.state_db.override_pool(self.db)
        self.storage = Storage(self.db)
        self.state_store = PgASStateStore(self.state_db)
        self.meetings = Meetings(self.storage, self.clock)
        self.queues = RoomQueues()
        self.az = BridgeAppService(
            server=config["homeserver.address"],
            domain=config["homeserver.domain"],
            as_token=config["appservice.as_token"],
            hs_token=config["appservice.hs_token"],
            bot_localpart=config["appservice.bot_username"],
            id=config["appservice.id"],
            verify_ssl=config["homeserver.verify_ssl"],
            state_store=self.state_store,
            log=logging.getLogger("visio.appservice"),
            default_ua=f"visio-bridge/{__version__}",
        )
        self.az.attach_storage(self.storage.transactions, self.clock)
        self.az.synchronous_handlers = True
        self.matrix = MatrixHandler(self)
        self.web = WebServer(self)
        self._started = False
        self._pruner: asyncio.Task[None] | None = None

    @property
    def bot(self) -> IntentAPI:
        return self.az.intent

    async def start(self) -> None:
        """Start everything, or raise StartupError with one sentence saying why not."""
        await self._start_database()
        await self.storage.transactions.prune(self.clock.now_ms())
        self._pruner = asyncio.create_task(self._prune_daily(), name="prune-transactions")
        await self.meetings.load()
        await self._start_listeners()
        self._started = True
        await self._check_homeserver()
        await self.matrix.start()
        self.az.ready = True
        log.info(
            "Visio Bridge ready: appservice listener on http://%s:%s, web on http://%s:%s"
            " (public URL %s)",
            self.config["appservice.hostname"],
            self.config["appservice.port"],
            self.config["web.hostname"],
            self.config["web.port"],
            self.config["web.public_url"],
        )

    async def _start_database(self) -> None:
        try:
            await self.db.start()
            await self.state_db.start()
        except Exception as e:
            raise StartupError(
                f"Could not open the database {_redact_url(self.config['appservice.database'])}"
                f" ({type(e).__name__}: {e}).",
                EXIT_DATABASE,
            ) from e

    async def _start_listeners(self) -> None:
        try:
            await self.az.start(
                host=self.config["appservice.hostname"], port=self.config["appservice.port"]
            )
        except OSError as e:
            raise StartupError(
                "Could not listen on appservice.hostname/port "
                f"{self.config['appservice.hostname']}:{self.config['appservice.port']} ({e}).",
                EXIT_LISTEN,
            ) from e
        try:
            await self.web.start()
        except OSError as e:
            raise StartupError(
                f"Could not listen on web.hostname/port {self.config['web.hostname']}:"
                f"{self.config['web.port']} ({e}).",
                EXIT_LISTEN,
            ) from e

    async def _check_homeserver(self) -> None:
        address = self.config["homeserver.address"]
        try:
            await self.bot.whoami()
        except MUnknownToken as e:
            raise StartupError(
                "The homeserver did not accept the as_token: is the registration file "
                "installed in the homeserver's app_service_config_files, and was the "
                "homeserver restarted since?",
                EXIT_TOKEN_REJECTED,
            ) from e
        except (TimeoutError, MatrixConnectionError, aiohttp.ClientError, OSError) as e:
            raise StartupError(
                f"The homeserver at {address} (homeserver.address) could not be reached ({e}).",
                EXIT_HOMESERVER_UNREACHABLE,
            ) from e
        except MatrixRequestError as e:
            raise StartupError(
                f"The homeserver at {address} refused the bridge: {e.message} ({e.errcode}).",
                EXIT_TOKEN_REJECTED,
            ) from e

    async def _prune_daily(self) -> None:
        """Forget handled transaction ids older than the retention (the homeserver
        retries for minutes, not days), so the table stays small."""
        while True:
            await asyncio.sleep(PRUNE_INTERVAL_S)
            try:
                await self.storage.transactions.prune(self.clock.now_ms())
            except Exception:
                log.exception("Pruning handled transactions failed")

    async def ping_homeserver(self) -> None:
        """Ask the homeserver to ping us, which also ends its back-off towards us."""
        try:
            duration = await self.bot.appservice_ping(self.config["appservice.id"])
            log.info("The homeserver reached the appservice listener in %s ms", duration)
        except MatrixRequestError as e:
            log.warning(
                "The homeserver could not reach the bridge at %s (appservice.address): %s",
                self.config["appservice.address"],
                e.message,
            )

    async def stop(self) -> None:
        """Stop everything this bridge started; safe to call after a failed start."""
        self.az.ready = False
        self.az.closing = True
        if self._pruner is not None:
            self._pruner.cancel()
        # Web first: sessions that close still update their rooms' state through the
        # room queues, which drain next, while the appservice and database are up.
        await self.web.stop()
        await self.matrix.stop()
        await self.queues.close()
        if getattr(self.az, "runner", None) is not None:
            await self.az.stop()
        await self.db.stop()
        log.info("Visio Bridge stopped")


def _redact_url(url: str) -> str:
    """A database URL with its password hidden (it goes to logs)."""
    parsed = URL(url)
    return str(parsed.with_password("***")) if parsed.password else url
