"""Bring an operator's config file up to the current shape without losing their words.

mautrix's own updater rebuilds the file from the example and copies values in, which
drops the operator's comments. Here the operator's document is the base: keys that the
example has and the file lacks are inserted at the example's position, with the
example's comment above them; everything the operator wrote stays as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

# Maps whose keys belong to the operator (user ids, logger names): never merged key by key.
OPAQUE_PATHS = frozenset({"bridge.permissions", "federation.server_urls", "logging"})

_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):")


def comments_by_path(example_text: str) -> dict[str, str]:
    """Map each dotted key path of the example file to the comment block just above it."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    for line in example_text.splitlines():
        stripped = line.strip()
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            pending.append(stripped[1:].removeprefix(" "))
            continue
        match = _KEY_LINE.match(line)
        if match is None:
            pending = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if pending:
            comments[".".join(key for _, key in stack)] = "\n".join(pending)
        pending = []
    return comments


def _plain(value: Any) -> Any:
    """A copy of a loaded YAML value with no comments attached."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return CommentedSeq(_plain(item) for item in value)
    return value


def _fresh(value: Any, path: str, comments: dict[str, str], indent: int) -> Any:
    if not isinstance(value, dict) or path in OPAQUE_PATHS:
        plain = _plain(value)
        return _commented_map(plain) if isinstance(plain, dict) else plain
    fresh = CommentedMap()
    for key, item in value.items():
        child = f"{path}.{key}"
        fresh[key] = _fresh(item, child, comments, indent + 4)
        if child in comments:
            fresh.yaml_set_comment_before_after_key(key, before=comments[child], indent=indent)
    return fresh


def _commented_map(value: dict[str, Any]) -> CommentedMap:
    result = CommentedMap()
    for key, item in value.items():
        result[key] = _commented_map(item) if isinstance(item, dict) else item
    return result


def merge_missing(
    user: CommentedMap,
    example: Mapping[str, Any],
    comments: dict[str, str],
    path: str = "",
    indent: int = 0,
) -> list[str]:
    """Insert into ``user`` every key of ``example`` it lacks; return the paths added."""
    added: list[str] = []
    position = 0
    for key, value in example.items():
        child = f"{path}.{key}" if path else key
        if key in user:
            position = list(user.keys()).index(key) + 1
            if (
                isinstance(value, dict)
                and isinstance(user[key], dict)
                and child not in OPAQUE_PATHS
            ):
                added += merge_missing(user[key], value, comments, child, indent + 4)
            continue
        user.insert(position, key, _fresh(value, child, comments, indent + 4))
        if child in comments:
            user.yaml_set_comment_before_after_key(key, before=comments[child], indent=indent)
        position += 1
        added.append(child)
    return added
