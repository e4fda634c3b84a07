"""Entry point: ``python -m bridge`` (or ``visio-bridge``).

-g writes a registration for the homeserver; without it the bridge runs until SIGTERM
or Ctrl-C. Startup problems end the program with one sentence and a distinct exit code.
"""

from __future__ import annotations

import asyncio
import copy
import faulthandler
import logging
import logging.config
import os
import signal
import sys
from typing import Any, cast

from mautrix.util.logging import TraceLogger
from mautrix.util.program import Program
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from . import __version__, redaction
from .config import EXAMPLE_CONFIG, Config, ConfigError
from .context import EXIT_CONFIG, Bridge, StartupError

EXIT_NO_CONFIG = 10

#: The whole stop, after SIGTERM or Ctrl-C, ends within this many seconds: past it, the
#: stack of every thread goes to stderr (the log of whatever hangs) and the process exits
#: with code 1, so a supervisor never has to kill a bridge that no longer serves anyone.
STOP_LIMIT = 40


def _fail(message: str, code: int) -> None:
    print(f"visio-bridge: {message}", file=sys.stderr)
    sys.exit(code)


def write_registration(path: str, registration: dict[str, Any]) -> None:
    """Write the registration file, readable by its owner only (it holds the tokens)."""
    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        yaml.dump(registration, stream)


class VisioBridge(Program):
    """The program around one Bridge: arguments, config file, logging, lifecycle."""

    module = "bridge"
    name = "visio-bridge"
    command = "python -m bridge"
    description = "Visio Bridge: Matrix rooms as video meetings"
    version = __version__
    config_class = Config
    config: Config
    bridge: Bridge | None = None

    @property
    def base_config_path(self) -> str:
        return EXAMPLE_CONFIG

    def prepare_arg_parser(self) -> None:
        super().prepare_arg_parser()
        self.parser.add_argument(
            "-g",
            "--generate-registration",
            action="store_true",
            help="write a registration file for the homeserver (fresh tokens) and exit",
        )
        self.parser.add_argument(
            "-r",
            "--registration",
            default="registration.yaml",
            metavar="<path>",
            help="the path of the registration file to write with -g",
        )
        self.parser.add_argument("--version", action="version", version=__version__)

    def prepare_config(self) -> None:
        path = self.args.config
        self.config = Config(path)
        try:
            self.config.load()
        except FileNotFoundError:
            _fail(
                f"no config file at {path}. Copy config.example.yaml there and edit it.",
                EXIT_NO_CONFIG,
            )
        except YAMLError as e:
            _fail(f"{path} is not valid YAML: {e}", EXIT_NO_CONFIG)
        except IsADirectoryError:
            _fail(f"{path} is a folder, not a config file.", EXIT_NO_CONFIG)
        except PermissionError:
            _fail(f"{path} cannot be read (permission denied).", EXIT_NO_CONFIG)
        except (OSError, UnicodeDecodeError) as e:
            _fail(f"{path} cannot be read ({e}).", EXIT_NO_CONFIG)
        for key in ("web.link_secret", "matrix_rtc.key"):
            if self.args.no_update and self.config[key] == "generate":
                # The secret would be made anew, unsaved, on every start: every link or
                # token handed out so far would stop working at each restart.
                _fail(
                    f"{key} is 'generate' and --no-update keeps the config read-only: "
                    f"set {key} to a secret of at least 32 characters.",
                    EXIT_CONFIG,
                )
        try:
            self.config.update(save=not self.args.no_update)
        except ConfigError as e:
            _fail(str(e), EXIT_CONFIG)
        except OSError as e:
            _fail(
                f"{path} could not be updated ({e}); use --no-update for a read-only file.",
                EXIT_NO_CONFIG,
            )
        if self.args.generate_registration:
            self._generate_registration()

    def _generate_registration(self) -> None:
        try:
            self.config.validate()
        except ConfigError as e:
            _fail(str(e), EXIT_CONFIG)
        registration = self.config.generate_registration()
        self.config.save()
        write_registration(self.args.registration, registration)
        print(
            f"Wrote {self.args.registration}. Add it to your homeserver's "
            "app_service_config_files and restart the homeserver."
        )
        sys.exit(0)

    def init_loop(self) -> None:
        # mautrix's Program switches to uvloop whenever it is installed. The bridge runs
        # on asyncio's own loop: its media path writes to and reads from the sockets of
        # asyncio's datagram transports directly (bridge.media.aiortc_hooks), and on
        # uvloop a SIGTERM never reached the loop's handler (the bridge did not stop).
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)

    def prepare_log(self) -> None:
        try:
            logging.config.dictConfig(copy.deepcopy(dict(self.config["logging"])))
        except (ValueError, TypeError, AttributeError, KeyError) as e:
            _fail(f"Invalid config value logging: {e}", EXIT_CONFIG)
        redaction.install()
        self.log = cast(TraceLogger, logging.getLogger("visio.init"))

    def check_config(self) -> None:
        try:
            self.config.validate()
            self.config.check_example_values()
        except ConfigError as e:
            _fail(str(e), EXIT_CONFIG)

    async def start(self) -> None:
        self.bridge = Bridge(self.config)
        try:
            await self.bridge.start()
        except StartupError as e:
            await self.bridge.stop()
            _fail(str(e), e.exit_code)
        await self.bridge.ping_homeserver()
        # Until now a signal aborts the start (mautrix raises KeyboardInterrupt). From now
        # on that would be raised in whatever code runs when it comes: a task halfway
        # through a database call then never gives its connection back, and the stop
        # waits for it (then the interpreter for the connection's thread). The event
        # loop takes the signals instead and asks for a clean stop between two steps.
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stop_requested, signum)

    def _stop_requested(self, signum: int) -> None:
        if not self._stop_task.done():
            self.log.info("Stopping (signal %d)", signum)
            self.manual_stop()
        else:
            self.log.info("Already stopping (signal %d ignored)", signum)

    def prepare_stop(self) -> None:
        # A second SIGTERM or Ctrl-C while stopping would raise inside whatever runs and
        # leave the stop half done (and the process hanging on the database thread):
        # the first one already asked for a clean stop, so the others are only noted.
        def already_stopping(signum: int, _frame: object) -> None:
            self.log.info("Already stopping (signal %d ignored)", signum)

        loop = self.loop
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
            signal.signal(signum, already_stopping)
        faulthandler.dump_traceback_later(STOP_LIMIT, exit=True)

    async def stop(self) -> None:
        if self.bridge is not None:
            await self.bridge.stop()


def main() -> None:
    VisioBridge().run()


if __name__ == "__main__":
    main()
