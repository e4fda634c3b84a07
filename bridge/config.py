"""The bridge's configuration: defaults from the example file, validation, permissions."""

from __future__ import annotations

import ipaddress
import os
import pkgutil
import re
import secrets
from pathlib import Path
from typing import Any

from mautrix.util.config import BaseFileConfig, ConfigUpdateHelper, RecursiveDict
from ruamel.yaml.comments import CommentedMap
from yarl import URL

from .config_update import comments_by_path, merge_missing
from .meeting.media import MAX_TRUNK_TRACKS
from .meeting.roles import Level

EXAMPLE_CONFIG = "pkg://bridge/example-config.yaml"
TOKEN_PLACEHOLDER = "This value is generated when generating the registration"

_LOCALPART = re.compile(r"^[a-z0-9._=/+-]+$")
_SERVER_NAME = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
_USER_ID = re.compile(r"^@[^:\s]+:(.+)$")


class ConfigError(ValueError):
    """A config value the bridge cannot run with; names the key and says why."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"Invalid config value {key}: {why}")
        self.key = key
        self.why = why


def example_config_text() -> str:
    data = pkgutil.get_data("bridge", "example-config.yaml")
    assert data is not None
    return data.decode("utf-8")


def is_valid_server_name(name: str) -> bool:
    return bool(_SERVER_NAME.match(name))


def _is_origin(text: str) -> bool:
    """``scheme://host[:port]`` and nothing more (what browsers send as Origin)."""
    url = URL(text)
    return url.scheme in ("http", "https") and bool(url.host) and text == str(url.origin())


def server_of(user_id: str) -> str | None:
    """The server name of a Matrix user id, or None when it is not a user id."""
    match = _USER_ID.match(user_id)
    return match[1] if match else None


#: What ``transcription.engine`` may be.
TRANSCRIPTION_ENGINES = ("whisper", "pocketsphinx", "none")


class Config(BaseFileConfig):
    """The config file, kept up to date with the example and validated before use."""

    def __init__(self, path: str, base_path: str = EXAMPLE_CONFIG) -> None:
        super().__init__(path, base_path)
        self.added_keys: list[str] = []

    def update(self, save: bool = True) -> None:
        base = self.load_base()
        assert base is not None, "the example config ships inside the package"
        if self._data is None:
            self._data = CommentedMap()
        if not isinstance(self._data, CommentedMap):
            raise ConfigError("(top level)", "the file must hold a YAML mapping")
        self.added_keys = merge_missing(
            self._data, base._data, comments_by_path(example_config_text())
        )
        if self["matrix_rtc.key"] == "generate":
            self["matrix_rtc.key"] = secrets.token_urlsafe(48)
            self.added_keys.append("matrix_rtc.key")
        if self["web.link_secret"] == "generate":
            self["web.link_secret"] = secrets.token_urlsafe(32)
            self.added_keys.append("web.link_secret")
        if save and self.added_keys:
            self.save()

    def do_update(self, helper: ConfigUpdateHelper) -> None:  # pragma: no cover - unused
        raise NotImplementedError("Config.update merges in place")

    # Validation ------------------------------------------------------------------

    def validate(self) -> None:
        """Raise ConfigError for the first value the bridge cannot run with."""
        self._validate_homeserver()
        self._validate_appservice()
        self._validate_web()
        self._validate_bridge()
        self._validate_media()
        self._validate_federation()
        self._validate_matrix_rtc()
        self._validate_capture()
        if not isinstance(self["logging"], dict):
            raise ConfigError("logging", "must be a logging.config.dictConfig mapping")

    def check_example_values(self) -> None:
        """Refuse values copied from the example that an operator must change."""
        must_change = {
            "homeserver.address": "https://matrix.example.com",
            "homeserver.domain": "example.com",
            "web.public_url": "https://visio.example.com",
            "appservice.as_token": TOKEN_PLACEHOLDER,
            "appservice.hs_token": TOKEN_PLACEHOLDER,
        }
        for key, example in must_change.items():
            if self[key] == example:
                hint = (
                    "generate the registration with `python -m bridge -g`"
                    if "token" in key
                    else "set it to your own value"
                )
                raise ConfigError(key, f"still has the example value {example!r}; {hint}")
        for key in self["bridge.permissions"] or {}:
            if key.endswith("example.com"):
                raise ConfigError(
                    "bridge.permissions",
                    f"still has the example entry {key!r}; name your own server and users",
                )

    def _require_str(self, key: str) -> str:
        value = self[key]
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(key, "must be a non-empty string")
        return value

    def _require_url(self, key: str) -> URL:
        value = self._require_str(key)
        url = URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(key, f"{value!r} is not an http:// or https:// URL")
        return url

    def _require_port(self, key: str) -> int:
        value = self[key]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
            raise ConfigError(key, f"{value!r} is not a port number (1-65535)")
        return value

    def _require_seconds(self, key: str, low: int, high: int) -> int:
        value = self[key]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(key, f"{value!r} is not a number of seconds from {low} to {high}")
        return value

    def _validate_homeserver(self) -> None:
        self._require_url("homeserver.address")
        if not is_valid_server_name(self._require_str("homeserver.domain")):
            raise ConfigError("homeserver.domain", "is not a valid Matrix server name")
        if not isinstance(self["homeserver.verify_ssl"], bool):
            raise ConfigError("homeserver.verify_ssl", "must be true or false")

    def _validate_appservice(self) -> None:
        self._require_url("appservice.address")
        self._require_str("appservice.hostname")
        self._require_port("appservice.port")
        if not re.match(r"^[A-Za-z0-9_.-]+$", self._require_str("appservice.id")):
            raise ConfigError("appservice.id", "may only hold letters, digits, '_', '.', '-'")
        if not _LOCALPART.match(self._require_str("appservice.bot_username")):
            raise ConfigError(
                "appservice.bot_username", "is not a valid Matrix localpart (a-z 0-9 ._=-/+)"
            )
        self._require_str("appservice.bot_displayname")
        for key in ("appservice.as_token", "appservice.hs_token"):
            self._require_str(key)
        if self["appservice.as_token"] == self["appservice.hs_token"] != TOKEN_PLACEHOLDER:
            raise ConfigError("appservice.hs_token", "must differ from appservice.as_token")
        database = URL(self._require_str("appservice.database"))
        if database.scheme not in ("sqlite", "sqlite3", "postgres", "postgresql"):
            raise ConfigError(
                "appservice.database",
                "must be a sqlite:<path> or postgres://user@host/database URL",
            )

    def _validate_web(self) -> None:
        self._require_str("web.hostname")
        web_port = self._require_port("web.port")
        self._require_url("web.public_url")
        if len(self._require_str("web.link_secret")) < 16:
            raise ConfigError("web.link_secret", "must be at least 16 characters")
        self._require_seconds("web.link_lifetime", 60, 30 * 24 * 3600)
        for key in ("web.element_origins", "web.allowed_origins"):
            origins = self[key]
            if not isinstance(origins, list) or not all(
                isinstance(origin, str) and _is_origin(origin) for origin in origins
            ):
                raise ConfigError(key, "must be a list of origins like https://example.com")
        for key in (
            "web.max_sockets",
            "web.max_sockets_per_address",
            "web.max_sockets_per_meeting",
        ):
            value = self[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(key, "must be a positive number")
        self._require_seconds("web.signin_timeout", 1, 300)
        if (
            web_port == self["appservice.port"]
            and self["web.hostname"] == self["appservice.hostname"]
        ):
            raise ConfigError(
                "web.port",
                "must differ from appservice.port: the appservice API is never served "
                "on the public listener",
            )

    def _validate_bridge(self) -> None:
        prefix = self._require_str("bridge.command_prefix")
        if any(ch.isspace() for ch in prefix):
            raise ConfigError("bridge.command_prefix", "must not contain spaces")
        template = self._require_str("bridge.username_template")
        if template.count("{meeting}") != 1:
            raise ConfigError("bridge.username_template", "must contain {meeting} once")
        if not _LOCALPART.match(template.replace("{meeting}", "x")):
            raise ConfigError("bridge.username_template", "must make valid localparts")
        if template.replace("{meeting}", "") == self["appservice.bot_username"]:
            raise ConfigError("bridge.username_template", "must not collide with the bot")
        permissions = self["bridge.permissions"]
        if not isinstance(permissions, dict):
            raise ConfigError("bridge.permissions", "must be a map of who to level")
        for who, level in permissions.items():
            who = str(who)
            if who != "*" and not server_of(who) and not is_valid_server_name(who):
                raise ConfigError(
                    "bridge.permissions",
                    f"{who!r} is neither '*', a server name nor a user id",
                )
            try:
                Level.parse(str(level))
            except ValueError:
                raise ConfigError(
                    "bridge.permissions",
                    f"{who!r} has level {level!r}; use none, user, moderator or admin",
                ) from None

    def _validate_media(self) -> None:
        servers = self["media.ice_servers"]
        if not isinstance(servers, list):
            raise ConfigError("media.ice_servers", "must be a list")
        for index, server in enumerate(servers):
            key = f"media.ice_servers[{index}]"
            if not isinstance(server, dict) or "urls" not in server:
                raise ConfigError(key, "must be a map with urls")
            urls = server["urls"]
            urls = [urls] if isinstance(urls, str) else urls
            if not isinstance(urls, list) or not urls:
                raise ConfigError(key, "urls must be a URL or a list of URLs")
            for url in urls:
                if not isinstance(url, str) or not re.match(r"^(stun|stuns|turn|turns):", url):
                    raise ConfigError(key, f"{url!r} is not a stun: or turn: URL")
        turn_urls = self["media.turn.urls"]
        if not isinstance(turn_urls, list) or not all(
            isinstance(url, str) and re.match(r"^turns?:", url) for url in turn_urls
        ):
            raise ConfigError("media.turn.urls", "must be a list of turn: or turns: URLs")
        if not isinstance(self["media.turn.shared_secret"], str):
            raise ConfigError("media.turn.shared_secret", "must be a string")
        if turn_urls and not self["media.turn.shared_secret"]:
            raise ConfigError("media.turn.shared_secret", "is needed when media.turn.urls is set")
        self._require_seconds("media.turn.lifetime", 60, 7 * 24 * 3600)
        self.udp_port_range()
        for key in ("media.allow_private_candidates", "media.packet_forwarding"):
            if not isinstance(self[key], bool):
                raise ConfigError(key, "must be true or false")
        addresses = self["media.host_addresses"]
        if not isinstance(addresses, list):
            raise ConfigError("media.host_addresses", "must be a list of IP addresses")
        for address in addresses:
            try:
                ipaddress.ip_address(str(address))
            except ValueError:
                raise ConfigError(
                    "media.host_addresses", f"{address!r} is not an IP address"
                ) from None

    def _validate_matrix_rtc(self) -> None:
        if not isinstance(self["matrix_rtc.enabled"], bool):
            raise ConfigError("matrix_rtc.enabled", "must be true or false")
        if len(self._require_str("matrix_rtc.key")) < 32:
            raise ConfigError("matrix_rtc.key", "must be at least 32 characters")

    def _validate_capture(self) -> None:
        if not isinstance(self["recording.enabled"], bool):
            raise ConfigError("recording.enabled", "must be true or false")
        self._require_str("recording.path")
        engine = self["transcription.engine"]
        if engine not in TRANSCRIPTION_ENGINES:
            raise ConfigError(
                "transcription.engine",
                f"{engine!r} is not one of {', '.join(TRANSCRIPTION_ENGINES)}",
            )
        model_dir = self["transcription.model_dir"]
        if not isinstance(model_dir, str):
            raise ConfigError("transcription.model_dir", "must be a folder path (or empty)")
        if engine == "whisper" and not model_dir.strip():
            raise ConfigError(
                "transcription.model_dir",
                "must name a CTranslate2 Whisper model folder when the engine is whisper",
            )
        language = self["transcription.language"]
        if not isinstance(language, str) or not re.fullmatch(r"[a-z]{2,3}", language):
            raise ConfigError(
                "transcription.language", f"{language!r} is not a language code like fr"
            )
        if engine == "pocketsphinx" and language != "en":
            raise ConfigError(
                "transcription.language", "pocketsphinx only knows English: set it to en"
            )
        speakers = self["transcription.max_speakers"]
        if not isinstance(speakers, int) or isinstance(speakers, bool) or not 1 <= speakers <= 64:
            raise ConfigError("transcription.max_speakers", f"{speakers!r} is not from 1 to 64")
        for key in ("retention.transcripts_days", "retention.recordings_days"):
            days = self[key]
            if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= 36500:
                raise ConfigError(key, f"{days!r} is not a number of days (0 keeps for ever)")

    def recording_path(self) -> Path:
        """``recording.path``, a relative one taken from the config file's folder (so a
        container's ``/data/config.yaml`` records into ``/data/recordings``)."""
        path = Path(self["recording.path"]).expanduser()
        if path.is_absolute():
            return path
        return Path(self.path).resolve().parent / path

    def udp_port_range(self) -> tuple[int, int] | None:
        """``media.udp_ports`` as (low, high), or None for any port."""
        text = self["media.udp_ports"]
        if text in ("", None):
            return None
        match = re.fullmatch(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*", str(text))
        if not match or not 1024 <= int(match[1]) <= int(match[2]) <= 65535:
            raise ConfigError(
                "media.udp_ports", 'must be a range like "40000-40999" (ports 1024 to 65535)'
            )
        return int(match[1]), int(match[2])

    def _validate_federation(self) -> None:
        servers = self["federation.allowed_servers"]
        if not isinstance(servers, list):
            raise ConfigError("federation.allowed_servers", "must be a list of server names")
        for server in servers:
            if not isinstance(server, str) or not is_valid_server_name(server):
                raise ConfigError("federation.allowed_servers", f"{server!r} is not a server name")
        urls = self["federation.server_urls"]
        if not isinstance(urls, dict):
            raise ConfigError("federation.server_urls", "must be a map of server name to URL")
        for server, url in urls.items():
            if not is_valid_server_name(str(server)):
                raise ConfigError("federation.server_urls", f"{server!r} is not a server name")
            if not isinstance(url, str) or URL(url).scheme not in ("http", "https"):
                raise ConfigError("federation.server_urls", f"{url!r} is not an http(s) URL")
        if not isinstance(self["federation.allow_private_addresses"], bool):
            raise ConfigError("federation.allow_private_addresses", "must be true or false")
        peers = self["federation.peer_bridges"]
        if not isinstance(peers, list):
            raise ConfigError("federation.peer_bridges", "must be a list of Matrix user ids")
        for peer in peers:
            server = server_of(peer) if isinstance(peer, str) else None
            if server is None or not peer.startswith("@") or not is_valid_server_name(server):
                raise ConfigError("federation.peer_bridges", f"{peer!r} is not a Matrix user id")
            if peer == self.bot_mxid:
                raise ConfigError("federation.peer_bridges", "must not name this bridge's bot")
        for key, top in (("max_trunks", 1000), ("trunk_tracks", MAX_TRUNK_TRACKS)):
            value = self[f"federation.{key}"]
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
                raise ConfigError(f"federation.{key}", f"must be a whole number from 1 to {top}")
        ca_file = self["federation.ca_file"]
        if not isinstance(ca_file, str):
            raise ConfigError("federation.ca_file", "must be a file path or empty")
        if ca_file and not os.path.isfile(ca_file):
            raise ConfigError("federation.ca_file", f"{ca_file} is not a readable file")

    # Derived values --------------------------------------------------------------

    @property
    def bot_mxid(self) -> str:
        return f"@{self['appservice.bot_username']}:{self['homeserver.domain']}"

    def ghost_localpart(self, meeting_id: str) -> str:
        return str(self["bridge.username_template"]).format(meeting=meeting_id.lower())

    def is_ghost(self, user_id: str) -> bool:
        prefix, suffix = str(self["bridge.username_template"]).split("{meeting}")
        localpart, _, server = user_id[1:].partition(":")
        return (
            server == self["homeserver.domain"]
            and localpart.startswith(prefix)
            and localpart.endswith(suffix)
            and len(localpart) > len(prefix) + len(suffix)
        )

    def is_bridge_user(self, user_id: str) -> bool:
        """The bot or one of its ghosts: users the bridge itself puppets."""
        return user_id == self.bot_mxid or self.is_ghost(user_id)

    def allowed_servers(self) -> set[str]:
        return {self["homeserver.domain"], *(self["federation.allowed_servers"] or [])}

    def permission_level(self, user_id: str) -> Level:
        """The user's bridge level: their user id beats their server, which beats '*'."""
        permissions: dict[str, Any] = dict(self["bridge.permissions"] or {})
        for key in (user_id, server_of(user_id), "*"):
            if key is not None and key in permissions:
                return Level.parse(str(permissions[key]))
        return Level.NONE

    # Registration ----------------------------------------------------------------

    def generate_registration(self) -> dict[str, Any]:
        """Fresh tokens into the config, and the registration the homeserver needs."""
        self["appservice.as_token"] = secrets.token_urlsafe(48)
        self["appservice.hs_token"] = secrets.token_urlsafe(48)
        return self.registration()

    def registration(self) -> dict[str, Any]:
        domain = re.escape(str(self["homeserver.domain"]))
        prefix, suffix = (
            re.escape(p) for p in self["bridge.username_template"].split("{meeting}")
        )
        bot = re.escape(str(self["appservice.bot_username"]))
        return {
            "id": self["appservice.id"],
            "url": self["appservice.address"],
            "as_token": self["appservice.as_token"],
            "hs_token": self["appservice.hs_token"],
            "sender_localpart": self["appservice.bot_username"],
            "rate_limited": False,
            "namespaces": {
                "users": [
                    {"regex": f"@{bot}:{domain}", "exclusive": True},
                    {"regex": f"@{prefix}.+{suffix}:{domain}", "exclusive": True},
                ],
                "aliases": [],
                "rooms": [],
            },
        }


def load_config(path: str, *, update: bool = True) -> Config:
    """Load, update and validate a config file; raises ConfigError or OSError."""
    config = Config(path)
    config.load()
    config.update(save=update)
    config.validate()
    return config


def config_from_dict(overrides: dict[str, Any], path: str = "/nonexistent/config.yaml") -> Config:
    """A config made from the example plus dotted-key overrides (tests, tools)."""
    config = Config(path)
    base = config.load_base()
    assert isinstance(base, RecursiveDict)
    config._data = base._data
    for key, value in overrides.items():
        config[key] = value
    if config["web.link_secret"] == "generate":
        config["web.link_secret"] = secrets.token_urlsafe(32)
    if config["matrix_rtc.key"] == "generate":
        config["matrix_rtc.key"] = secrets.token_urlsafe(48)
    return config
