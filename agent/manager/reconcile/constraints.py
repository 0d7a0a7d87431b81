"""Placement constraints and preferences as users write them, and Docker's architecture names.

``node.labels.zone==east`` parses into a :class:`Constraint`; ``spread=node.labels.zone`` into
the attribute it spreads over. Errors are ValueErrors that say what is wrong in the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "ENGINE_LABELS",
    "NODE_LABELS",
    "Constraint",
    "docker_arch",
    "parse_constraint",
    "parse_preference",
]

NODE_LABELS = "node.labels."
ENGINE_LABELS = "engine.labels."
_ATTRIBUTES = ("node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch")
_KNOWN = (
    "node.id, node.hostname, node.role, node.platform.os, node.platform.arch, "
    "node.labels.<name> or engine.labels.<name>"
)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]+")
# No operator characters (=, !, <, >, ~) and no quotes: a value is a word, a path or a pattern.
_VALUE = re.compile(r"[A-Za-z0-9:_.\-*()?+\[\]\\^$|/ \t]+")
# Docker's names for the architectures ``uname -m`` reports.
_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "armv7": "arm",
    "armv6l": "arm",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
}


def docker_arch(name: str) -> str:
    name = name.strip().lower()
    return _ARCH_ALIASES.get(name, name)


@dataclass(frozen=True, slots=True)
class Constraint:
    """``node.labels.zone==east``: ``key`` names a node attribute, ``op`` is ``==`` or ``!=``.

    As in Swarm, values compare case-insensitively, label names case-sensitively, and a label a
    node lacks equals nothing (so ``!=`` holds). Architectures compare by Docker's name
    (``x86_64`` is ``amd64``).
    """

    key: str
    op: str
    value: str


def _attribute_key(key: str, what: str) -> str:
    """``key`` with its fixed part in lower case (label names keep theirs), else ValueError."""
    if not key:
        raise ValueError(f"{what}: the node attribute before the operator is missing")
    if not _KEY.fullmatch(key):
        raise ValueError(f"{what}: {key!r} is not a node attribute (expected {_KNOWN})")
    lowered = key.lower()
    if lowered in _ATTRIBUTES:
        return lowered
    for prefix in (NODE_LABELS, ENGINE_LABELS):
        if lowered.startswith(prefix) and len(key) > len(prefix):
            return prefix + key[len(prefix) :]
    raise ValueError(f"{what}: unknown node attribute {key!r} (expected {_KNOWN})")


@lru_cache(maxsize=1024)
def parse_constraint(text: str) -> Constraint:
    """Parse ``<attribute>==<value>`` or ``<attribute>!=<value>``; ValueError says what is wrong."""
    what = f"invalid constraint {text!r}"
    for op in ("==", "!="):
        key, found, value = text.partition(op)
        if found:
            break
    else:
        raise ValueError(f"{what}: expected <attribute>==<value> or <attribute>!=<value>")
    key, value = _attribute_key(key.strip(), what), value.strip()
    if not value:
        raise ValueError(f"{what}: the value after {op} is missing")
    if not _VALUE.fullmatch(value):
        raise ValueError(f"{what}: value {value!r} has characters a constraint cannot hold")
    return Constraint(key, op, value)


def parse_preference(text: str) -> str:
    """Parse ``spread=<attribute>`` (the only strategy, as in Swarm) into the attribute key."""
    strategy, found, descriptor = text.partition("=")
    what = f"invalid placement preference {text!r}"
    if not found or strategy.strip().lower() != "spread":
        raise ValueError(f"{what}: expected spread=<attribute>, e.g. spread=node.labels.zone")
    return _attribute_key(descriptor.strip(), what)
