"""The bridge context: the one object that makes every part, wires them, and owns their
lifecycle.

Each part gets what it uses in its constructor, from here; no part holds the whole
bridge, and nothing is a module-level singleton, so two bridges (two agencies) run in
one process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiortc import RTCIceServer
from mautrix.appservice import IntentAPI
from mautrix.appservice.state_store.asyncpg import PgASStateStore
from mautrix.client.state_store.asyncpg import PgStateStore
from mautrix.errors import MatrixConnectionError, MatrixRequestError, MUnknownToken
from mautrix.util.async_db import Database
from yarl import URL

from . import __version__
from .auth import LinkSigner, OpenIDVerifier, PersonalLinks, SignIn
from .capture.recordings import Recordings, RecordingSink
from .capture.retention import Retention
from .capture.transcripts import Heard, TranscriberSink, Transcriptions
from .clock import Clock, SystemClock
from .config import Config
from .db import Storage, upgrade_table
from .federation import TrunkPolicy, Trunks
from .livekit.delayed import DelayedLeaves
from .livekit.rtc import LiveKitDoor
from .livekit.service import TokenService
from .livekit.tokens import AccessTokens
from .matrix.appservice import BridgeAppService
from .matrix.calls import CallMeetings
from .matrix.capture import MatrixCapture
from .matrix.commands import CommandContext
from .matrix.dispatch import RoomQueues
from .matrix.federation import MatrixFederation
from .matrix.handler import MatrixHandler
from .matrix.meeting_room import MeetingRoom
from .matrix.rooms import MatrixRooms
from .matrix.rtc_presence import RtcPresence
from .media import SFU, MediaSettings
from .meeting.attendee import RESTARTING
from .meeting.media import TrunkLimits
from .meeting.meetings import Meetings
from .metrics import BridgeCollector, MetricsEndpoint, meeting_counts
from .web.avatars import AvatarProxy
from .web.ice import browser_ice_servers
from .web.server import WebServer
from .web.signaling import SignalingDoor, SocketLimits

if TYPE_CHECKING:
    from .transcription.engines import Engine

#: How long one step of the shutdown may take before the bridge says which and goes on:
#: an operator's stop (systemd, Docker) must end, whatever one part is waiting for.
STOP_STEP_TIMEOUT = 10.0

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
#: The ``iss`` of the LiveKit access tokens the bridge signs (LiveKit's "API key").
LIVEKIT_API_KEY = "visio-bridge"


def media_settings(config: Config) -> MediaSettings:
    """The SFU's settings from the media section of the config."""
    servers = [
        RTCIceServer(
            urls=server["urls"],
            username=server.get("username"),
            credential=server.get("credential"),
        )
        for server in config["media.ice_servers"]
    ]
    return MediaSettings(
        ice_servers=servers,
        host_addresses=list(config["media.host_addresses"]) or None,
        allow_private_candidates=config["media.allow_private_candidates"],
        udp_ports=config.udp_port_range(),
        packet_forwarding=config["media.packet_forwarding"],
    )


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
        self.storage = Storage(self.db)
        self.state_store = PgASStateStore(self.state_db)
        self.sfu = SFU(media_settings(config))
        self.meetings = Meetings(
            self.storage.meetings, self.storage.attendance, self.sfu, self.clock
        )
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
        self.az.attach_storage(self.storage.inbox, self.clock)
        self.az.synchronous_handlers = True
        self.rooms = MatrixRooms(self.az, self.state_store, self.storage.direct_rooms)
        self.meeting_room = MeetingRoom(
            self.az, self.state_store, self.rooms, config["web.public_url"]
        )
        self.links = LinkSigner(config["web.link_secret"], config["web.link_lifetime"])
        self.personal_links = PersonalLinks(self.links, self.storage.personal_links)
        self.openid = OpenIDVerifier(
            own_server=config["homeserver.domain"],
            own_address=config["homeserver.address"],
            allowed_servers=config.allowed_servers(),
            server_urls=dict(config["federation.server_urls"]),
            ca_file=config["federation.ca_file"],
            allow_private_addresses=config["federation.allow_private_addresses"],
        )
        self.signin = SignIn(
            self.personal_links, self.openid, self.rooms, config.permission_level, self.clock
        )
        self.federation = MatrixFederation(
            self.az,
            self.meetings,
            self.rooms,
            self.meeting_room,
            frozenset(config["federation.peer_bridges"]),
            self.storage.peer_doors,
            config["web.public_url"],
        )
        self.trunks = Trunks(
            self.meetings,
            self.federation,
            TrunkPolicy(
                own_bot=config.bot_mxid,
                peer_bridges=frozenset(config["federation.peer_bridges"]),
                max_trunks=config["federation.max_trunks"],
                limits=TrunkLimits(
                    audio=config["federation.trunk_tracks"],
                    video=config["federation.trunk_tracks"],
                ),
            ),
            self.federation,
        )
        self.meetings.listeners.append(self.trunks.meeting_changed)
        capture_poster = MatrixCapture(self.az)
        self.recordings = Recordings(
            self.meetings,
            self.storage.capture_files,
            capture_poster,
            self.clock,
            enabled=config["recording.enabled"],
            path=config.recording_path(),
            recorder=_recorder,
        )
        self._engine: Engine | None = None
        self.transcriptions = Transcriptions(
            self.meetings,
            capture_poster,
            self.recordings.posting,
            self.clock,
            transcriber=(self._transcriber if config["transcription.engine"] != "none" else None),
            path=config.recording_path(),
            unavailable=(
                "Transcription is not set up on this bridge (transcription.engine is none)."
            ),
        )
        self.retention = Retention(
            self.storage.capture_files,
            capture_poster,
            self.clock,
            days={
                "recording": config["retention.recordings_days"],
                "transcript": config["retention.transcripts_days"],
            },
        )
        self.matrix = MatrixHandler(
            config,
            self.az,
            self.state_store,
            self.queues,
            self.storage.inbox,
            self.meetings,
            self.rooms,
            self.meeting_room,
            CommandContext(
                meetings=self.meetings,
                rooms=self.rooms,
                meeting_room=self.meeting_room,
                links=self.personal_links,
                clock=self.clock,
                prefix=config["bridge.command_prefix"],
                bot_mxid=config.bot_mxid,
                end_elsewhere=self.trunks.end_everywhere,
                recordings=self.recordings,
                transcriptions=self.transcriptions,
            ),
            federation=self.federation,
            trunks=self.trunks,
        )
        self.signaling = SignalingDoor(
            self.meetings,
            self.signin,
            self._ice_servers,
            SocketLimits(
                public_url=config["web.public_url"],
                allowed_origins=tuple(config["web.allowed_origins"]),
                max_sockets=config["web.max_sockets"],
                max_sockets_per_address=config["web.max_sockets_per_address"],
                max_sockets_per_meeting=config["web.max_sockets_per_meeting"],
                signin_timeout=config["web.signin_timeout"],
            ),
            # Renewed at half their lifetime, while someone stays in a meeting.
            ice_renewal=config["media.turn.lifetime"] / 2 if config["media.turn.urls"] else None,
        )
        self.avatars = AvatarProxy(
            config["homeserver.address"],
            config["appservice.as_token"],
            config.allowed_servers(),
            self.signaling.media_tokens,
        )
        self.web = WebServer(
            config["web.hostname"],
            config["web.port"],
            self.meetings.get,
            self.signaling,
            self.avatars,
            self._readiness,
            public_url=config["web.public_url"],
            element_origins=tuple(config["web.element_origins"]),
            peer_door=self.federation.peer_door,
            room_doors=self.federation.room_doors,
            own_server=config["homeserver.domain"],
        )
        self.livekit_tokens = AccessTokens(LIVEKIT_API_KEY, config["matrix_rtc.key"])
        self.delayed_leaves = DelayedLeaves(config["homeserver.address"], self._session)
        self.token_service = TokenService(
            self.signin,
            self.livekit_tokens,
            config["web.public_url"],
            self.clock,
            delayed=self.delayed_leaves,
            own_server=config["homeserver.domain"],
        )
        self.calls = CallMeetings(self.meetings, self.rooms, self.meeting_room)
        self.livekit = LiveKitDoor(
            self.meetings,
            self.signin,
            self.livekit_tokens,
            self._ice_servers,
            self.signaling.open,
            self.calls.meeting_for_call,
            self.clock,
            self.delayed_leaves,
        )
        #: This bridge's people of other doors in Element Call's roster.
        self.rtc_presence: RtcPresence | None = None
        if config["matrix_rtc.enabled"]:
            self.token_service.routes(self.web.app)
            self.livekit.routes(self.web.app)
            self.rtc_presence = RtcPresence(
                self.az,
                self.meetings,
                self.rooms,
                self.clock,
                ghost_localpart=config.ghost_localpart,
                is_ghost=config.is_ghost,
                domain=config["homeserver.domain"],
                service_url=f"{str(config['web.public_url']).rstrip('/')}/livekit",
            )
            self.meetings.rtc_identity_for = self.rtc_presence.identity_for
        self.metrics = MetricsEndpoint(
            BridgeCollector(
                lambda: meeting_counts(self.meetings),
                self.sfu.counters,
                self._matrix_counts,
                lambda: dict(self.signin.refusals),
            )
        )
        # On the appservice listener, which only the homeserver (and your scraper) reach.
        self.az.app.router.add_get("/metrics", self.metrics.handle)
        self._http: aiohttp.ClientSession | None = None
        self._started = False
        self._pruner: asyncio.Task[None] | None = None
        self._retainer: asyncio.Task[None] | None = None

    @property
    def bot(self) -> IntentAPI:
        return self.az.intent

    async def start(self) -> None:
        """Start everything, or raise StartupError with one sentence saying why not."""
        await self._load_engine()
        await self._start_database()
        await self.storage.transactions.prune(self.clock.now_ms())
        self._pruner = asyncio.create_task(self._prune_daily(), name="prune-transactions")
        await self.meetings.load()
        # Events left by the last run go first; their jobs wait until the bot is up.
        self.queues.pause()
        await self.matrix.replay()
        await self._start_listeners()
        self._started = True
        await self._check_homeserver()
        await self.matrix.start()
        self.queues.resume()
        await self.recordings.resume()
        await self.transcriptions.resume()
        if self.rtc_presence is not None:
            # Memberships a crash left behind go now, where nobody came back.
            self.rtc_presence.start(self.meetings.all_live())
        self._retainer = asyncio.create_task(self._retain_daily(), name="retention")
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

    async def _load_engine(self) -> None:
        """Load the transcription engine and its model once, before anything starts: a
        model that is missing or wrong stops the start, with the reason."""
        name = self.config["transcription.engine"]
        if name == "none":
            return
        from .transcription.engines import load_engine

        try:
            self._engine = await asyncio.to_thread(
                load_engine,
                name,
                self.config["transcription.model_dir"] or None,
                self.config["transcription.language"],
            )
        except ValueError as e:
            raise StartupError(f"transcription: {e}", EXIT_CONFIG) from None
        log.info("Transcription engine %s loaded", name)

    async def _close_rtc_presence(self) -> None:
        if self.rtc_presence is not None:
            await self.rtc_presence.close()

    async def _close_engine(self) -> None:
        if self._engine is not None:
            # pocketsphinx decodes in worker processes: they end here.
            await asyncio.to_thread(self._engine.close)

    def _transcriber(
        self, on_segment: Callable[[Heard], None], on_limited: Callable[[bool, str], None]
    ) -> TranscriberSink:
        from .transcription.transcriber import Transcriber

        assert self._engine is not None, "the engine is loaded at start"
        return Transcriber(
            self._engine,
            on_segment,
            language=self.config["transcription.language"],
            on_limited=lambda reason: on_limited(reason is not None, reason or ""),
            max_speakers=self.config["transcription.max_speakers"],
        )

    async def _start_database(self) -> None:
        try:
            await self.db.start()
            # mautrix's state store shares the bridge's pool, which exists only now.
            self.state_db.override_pool(self.db)
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

    async def _retain_daily(self) -> None:
        """Delete the recordings and transcripts past their retention: at start, then
        once a day."""
        while True:
            try:
                await self.retention.run()
            except Exception:
                log.exception("Deleting expired recordings and transcripts failed")
            await asyncio.sleep(PRUNE_INTERVAL_S)

    def _matrix_counts(self) -> dict[str, int]:
        return {
            "transactions": self.az.transactions_received,
            "events_handled": self.matrix.events_handled,
            "inbox_pending": self.storage.inbox.pending_count,
        }

    def _ice_servers(self, user_id: str) -> list[dict[str, Any]]:
        return browser_ice_servers(self.config, user_id, self.clock.now_ms() // 1000)

    async def _readiness(self) -> dict[str, bool]:
        """What /ready reports: the database answers and the homeserver is reachable."""
        return {"database": await self._database_ok(), "homeserver": await self._homeserver_ok()}

    async def _database_ok(self) -> bool:
        try:
            async with asyncio.timeout(5):
                return bool(await self.db.fetchval("SELECT 1") == 1)
        except Exception as e:
            log.warning("Readiness: the database does not answer: %s", e)
            return False

    def _session(self) -> aiohttp.ClientSession:
        """The bridge's own HTTP client towards its homeserver (made on first use)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return self._http

    async def _homeserver_ok(self) -> bool:
        url = str(self.config["homeserver.address"]).rstrip("/")
        try:
            async with (
                asyncio.timeout(5),
                self._session().get(f"{url}/_matrix/client/versions") as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning("Readiness: the homeserver does not answer: %s", e)
            return False

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
        for task in (self._pruner, self._retainer):
            if task is not None:
                task.cancel()
        # Meetings and web first: people who leave still update their rooms' state
        # through the room queues, which drain next, while the appservice and database
        # are up.
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("trunks", self.trunks.close),
            ("meetings", lambda: self.meetings.close(RESTARTING)),
            ("Element Call roster", self._close_rtc_presence),
            ("recordings", self.recordings.close),
            ("transcriptions", self.transcriptions.close),
            ("transcription engine", self._close_engine),
            ("LiveKit door", self.livekit.close),
            ("web listener", self.web.stop),
            ("delayed leaves", self.delayed_leaves.close),
            ("OpenID verifier", self.openid.close),
        ]
        if self._http is not None:
            steps.append(("HTTP client", self._http.close))
        steps += [("Matrix handler", self.matrix.stop), ("room queues", self.queues.close)]
        if getattr(self.az, "runner", None) is not None:
            steps.append(("appservice", self.az.stop))
        steps.append(("database", self.db.stop))
        await stop_in_order(steps)
        log.info("Visio Bridge stopped")


async def stop_in_order(
    steps: list[tuple[str, Callable[[], Awaitable[object]]]],
    timeout: float = STOP_STEP_TIMEOUT,  # noqa: ASYNC109
) -> None:
    """Run the shutdown's steps one after the other, each within ``timeout`` seconds: a
    step that overruns is cancelled and named in the log with what still runs, one that
    fails is logged, and either way the next one goes on (the database still closes)."""
    for name, step in steps:
        log.debug("Stopping: %s", name)
        try:
            async with asyncio.timeout(timeout):
                await step()
        except TimeoutError:
            waiting = [
                f"{task.get_name()} at {task.get_stack(limit=1)}"
                for task in asyncio.all_tasks()
                if task is not asyncio.current_task()
            ]
            log.warning(
                "Stopping the %s took over %.0f s; going on. Still running: %s",
                name,
                timeout,
                "; ".join(waiting[:20]) or "nothing",
            )
        except Exception:
            log.exception("Stopping the %s failed; going on", name)


def _recorder(folder: Path, name_of: Callable[[str], str]) -> RecordingSink:
    # Imported when first used: PyAV's muxers load only on bridges that record.
    from .recording import Recorder

    return Recorder(folder, name_of=name_of)


def _redact_url(url: str) -> str:
    """A database URL with its password hidden (it goes to logs)."""
    parsed = URL(url)
    return str(parsed.with_password("***")) if parsed.password else url
