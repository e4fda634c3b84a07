"""Config: loading, updating with comments kept, validation, permissions, registration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from bridge.config import Config, ConfigError, Level, load_config
from bridge.config_update import comments_by_path
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_at_top_level_is_the_packaged_one() -> None:
    top = (ROOT / "config.example.yaml").read_text()
    packaged = (ROOT / "bridge" / "example-config.yaml").read_text()
    assert top == packaged


def test_every_example_key_has_a_comment() -> None:
    text = (ROOT / "bridge" / "example-config.yaml").read_text()
    comments = comments_by_path(text)
    yaml = YAML()
    data = yaml.load(text)

    def paths(node: object, prefix: str = "") -> list[str]:
        if not isinstance(node, dict) or prefix in ("bridge.permissions", "logging"):
            return [prefix]
        found = [prefix] if prefix else []
        for key, value in node.items():
            found += paths(value, f"{prefix}.{key}" if prefix else key)
        return found

    uncommented = [path for path in paths(data) if path not in comments]
    assert uncommented == []


def test_update_adds_missing_keys_and_keeps_user_values_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "# Ministry of Examples: our bridge\n"
        "homeserver:\n"
        "    address: https://matrix.ministry.test  # the big one\n"
        "    # our server name\n"
        "    domain: ministry.test\n"
        "bridge:\n"
        "    permissions:\n"
        '        "ministry.test": user\n'
    )
    config = Config(str(path))
    config.load()
    config.update(save=True)
    saved = path.read_text()
    assert "# Ministry of Examples: our bridge" in saved
    assert "# the big one" in saved
    assert "# our server name" in saved
    assert "address: https://matrix.ministry.test" in saved
    # New keys arrive with their defaults and the example's comment.
    assert "# Prefix of bot commands typed in rooms." in saved
    assert config["bridge.command_prefix"] == "!visio"
    assert config["web.port"] == 29351
    # The operator's permissions map is theirs: no example entries are merged in.
    assert dict(config["bridge.permissions"]) == {"ministry.test": "user"}
    assert "homeserver.verify_ssl" in config.added_keys
    # A generated link secret is stored, and a second update changes nothing.
    secret = config["web.link_secret"]
    assert len(secret) >= 32
    config2 = Config(str(path))
    config2.load()
    config2.update(save=True)
    assert config2.added_keys == []
    assert config2["web.link_secret"] == secret
    assert path.read_text() == saved


def test_no_update_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    original = "homeserver:\n    domain: ministry.test\n"
    path.write_text(original)
    config = Config(str(path))
    config.load()
    config.update(save=False)
    assert path.read_text() == original
    assert config["appservice.port"] == 29350


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("homeserver.address", "matrix.ministry.test", "not an http:// or https:// URL"),
        ("homeserver.domain", "bad domain!", "not a valid Matrix server name"),
        ("appservice.port", "80a", "not a port number"),
        ("appservice.port", 70000, "not a port number"),
        ("appservice.database", "mysql://x/y", "sqlite:<path> or postgres://"),
        ("appservice.bot_username", "Visio Bot", "not a valid Matrix localpart"),
        ("web.port", 29350, "must differ from appservice.port"),
        ("web.public_url", "ftp://x", "not an http:// or https:// URL"),
        ("bridge.command_prefix", "! visio", "must not contain spaces"),
        ("bridge.username_template", "visio_", "must contain {meeting} once"),
        ("bridge.permissions", {"*": "superuser"}, "use none, user, moderator or admin"),
        ("bridge.permissions", {"not a server!": "user"}, "neither '*', a server name"),
        ("media.ice_servers", [{"urls": "http://stun"}], "is not a stun: or turn: URL"),
        ("media.host_addresses", ["localhost"], "is not an IP address"),
        ("federation.allowed_servers", ["bad server!"], "is not a server name"),
        ("federation.server_urls", {"x.test": "ftp://x"}, "is not an http(s) URL"),
        ("web.link_lifetime", 5, "not a number of seconds"),
        ("media.turn.urls", ["stun:x"], "turn: or turns: URLs"),
        ("logging", "verbose", "dictConfig mapping"),
    ],
)
def test_validation_names_the_key_and_why(key: str, value: object, message: str) -> None:
    config = make_config(**{key.replace(".", "__"): value})
    with pytest.raises(ConfigError) as error:
        config.validate()
    assert error.value.key.startswith(key.split("[")[0])
    assert message in str(error.value)


def test_turn_urls_need_the_shared_secret() -> None:
    config = make_config(media__turn__urls=["turn:turn.agency.test:3478"])
    with pytest.raises(ConfigError) as error:
        config.validate()
    assert error.value.key == "media.turn.shared_secret"


def test_a_good_config_validates() -> None:
    make_config().validate()


@pytest.mark.parametrize(
    "key",
    ["homeserver.address", "homeserver.domain", "web.public_url", "appservice.as_token"],
)
def test_example_values_are_refused(key: str) -> None:
    example = Config("/nonexistent")
    base = example.load_base()
    assert base is not None
    config = make_config(**{key.replace(".", "__"): base[key]})
    with pytest.raises(ConfigError, match="example value"):
        config.check_example_values()


def test_example_permission_entries_are_refused() -> None:
    config = make_config(bridge__permissions={"example.com": "user"})
    with pytest.raises(ConfigError, match="example entry"):
        config.check_example_values()


def test_permission_resolution_user_beats_server_beats_star() -> None:
    config = make_config(
        bridge__permissions={
            "*": "user",
            "ministry.test": "moderator",
            "@boss:ministry.test": "admin",
            "@intern:ministry.test": "none",
        }
    )
    assert config.permission_level("@someone:elsewhere.test") == Level.USER
    assert config.permission_level("@clerk:ministry.test") == Level.MODERATOR
    assert config.permission_level("@boss:ministry.test") == Level.ADMIN
    assert config.permission_level("@intern:ministry.test") == Level.NONE


def test_permission_default_is_none_without_star() -> None:
    config = make_config(bridge__permissions={"ministry.test": "user"})
    assert config.permission_level("@x:other.test") == Level.NONE
    # A server name in a user id with a port still resolves to that server.
    config = make_config(bridge__permissions={"127.0.0.1:8448": "admin"})
    assert config.permission_level("@x:127.0.0.1:8448") == Level.ADMIN


def test_registration_reserves_the_bot_and_ghost_namespace() -> None:
    config = make_config()
    registration = config.generate_registration()
    assert registration["as_token"] == config["appservice.as_token"]
    assert registration["hs_token"] != registration["as_token"]
    assert registration["sender_localpart"] == "visio"
    regexes = [entry["regex"] for entry in registration["namespaces"]["users"]]
    assert all(entry["exclusive"] for entry in registration["namespaces"]["users"])
    ghost = "@" + config.ghost_localpart("abc123") + ":agency.test"
    assert any(re.fullmatch(regex, ghost) for regex in regexes)
    assert any(re.fullmatch(regex, "@visio:agency.test") for regex in regexes)
    assert not any(re.fullmatch(regex, "@alice:agency.test") for regex in regexes)
    assert config.is_ghost(ghost)
    assert not config.is_ghost("@visio_:agency.test")
    assert not config.is_ghost("@visio_abc:other.test")


def test_top_level_registration_matches_what_g_makes_from_the_example(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "config.yaml"
    config.write_text((ROOT / "config.example.yaml").read_text())
    registration = tmp_path / "registration.yaml"
    subprocess.run(
        [sys.executable, "-m", "bridge", "-g", "-c", str(config), "-r", str(registration)],
        check=True,
        capture_output=True,
    )
    yaml = YAML(typ="safe")
    made = yaml.load(registration.read_text())
    shipped = yaml.load((ROOT / "registration.yaml").read_text())
    for key in ("as_token", "hs_token"):
        assert len(made[key]) >= 40
        made[key] = shipped[key]
    assert made == shipped
    # The tokens went into the config too, and the file is private.
    written = load_config(str(config), update=False)
    assert written["appservice.as_token"] != shipped["as_token"]
    assert registration.stat().st_mode & 0o077 == 0


def test_a_relative_recording_path_is_taken_from_the_config_folder(tmp_path: Path) -> None:
    config = make_config(recording__path="./recordings")
    config.path = str(tmp_path / "config.yaml")
    assert config.recording_path() == tmp_path / "recordings"
    config["recording.path"] = "/srv/visio/recordings"
    assert config.recording_path() == Path("/srv/visio/recordings")


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("transcription.engine", "cloud", "is not one of whisper, pocketsphinx, none"),
        ("transcription.language", "French", "is not a language code"),
        ("transcription.max_speakers", 0, "is not from 1 to 64"),
        ("retention.recordings_days", -1, "is not a number of days"),
        ("recording.enabled", "yes", "must be true or false"),
        ("media.packet_forwarding", "fast", "must be true or false"),
    ],
)
def test_capture_settings_are_checked(key: str, value: object, says: str) -> None:
    config = make_config()
    config[key] = value
    with pytest.raises(ConfigError, match=says):
        config.validate()


def test_the_engines_need_what_they_need() -> None:
    config = make_config(transcription__engine="whisper")
    with pytest.raises(ConfigError, match="model folder"):
        config.validate()
    config = make_config(transcription__engine="pocketsphinx")
    with pytest.raises(ConfigError, match="only knows English"):
        config.validate()
    config["transcription.language"] = "en"
    config.validate()
