"""Merging several stack files (``-c base.yml -c override.yml``) the way docker/cli does.

Files are checked first, so both sides are in canonical form. Then, for each service:

* mappings merge key by key (environment, labels, networks, deploy, ...);
* ports are a set: an override adds ports, identical ones appear once;
* volumes merge by container path, secrets and configs by source name, devices by
  container path: an override entry replaces the base entry with the same key;
* cap_add, cap_drop, dns, dns_search, dns_opt, tmpfs and placement constraints and
  preferences are appended (without repeats);
* logging merges its options only when the driver stays the same;
* every other list and every scalar is replaced (command, entrypoint, healthcheck test, ...).

Top-level networks, volumes, secrets and configs are replaced whole, by name. Compose's
``!reset`` tag removes a key and ``!override`` replaces a value without merging.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from stacks.node import Node

__all__ = ["merge_documents"]


def _field(name: str) -> Callable[[Node], Hashable]:
    return lambda node: node.as_map()[name].value


def _whole(node: Node) -> Hashable:
    return tuple(sorted((k, v.value) for k, v in node.as_map().items()))


_KEYED: dict[tuple[str, ...], Callable[[Node], Hashable]] = {
    ("ports",): _whole,
    ("volumes",): _field("target"),
    ("secrets",): _field("source"),
    ("configs",): _field("source"),
    ("devices",): _field("target"),
}
_APPENDED = {
    ("cap_add",),
    ("cap_drop",),
    ("dns",),
    ("dns_search",),
    ("dns_opt",),
    ("tmpfs",),
    ("deploy", "placement", "constraints"),
    ("deploy", "placement", "preferences"),
}


def merge_documents(documents: list[Node]) -> Node:
    """Merge checked documents in order; the result carries no ``!reset`` markers."""
    if not documents:
        raise ValueError("merge_documents needs at least one document")
    first = documents[0]
    merged: dict[str, Node] = {}
    for document in documents:
        for section, node in document.items():
            if section not in merged:
                merged[section] = node.with_value({})
            if node.tag == "reset":
                merged[section] = node.with_value({})
                continue
            target = merged[section].as_map()
            for name, entry in node.items():
                if entry.tag == "reset":
                    target.pop(name, None)
                elif section == "services" and name in target:
                    target[name] = _merge(target[name], entry, ())
                else:
                    target[name] = _clean(entry)
    return first.with_value(merged)


def _merge(base: Node, over: Node, at: tuple[str, ...]) -> Node:
    if over.tag == "override":
        return _clean(over)
    if isinstance(base.value, dict) and isinstance(over.value, dict):
        if at == ("logging",) and _driver_changes(base, over):
            return _clean(over)
        out = dict(base.value)
        for key, value in over.value.items():
            if value.tag == "reset":
                out.pop(key, None)
            elif key in out:
                out[key] = _merge(out[key], value, (*at, key))
            else:
                out[key] = _clean(value)
        return over.with_value(out)
    if isinstance(base.value, list) and isinstance(over.value, list):
        added = [_clean(item) for item in over.value]
        if at in _KEYED:
            return over.with_value(_merge_keyed(base.value, added, _KEYED[at]))
        if at in _APPENDED:
            seen = {item.value for item in base.value}
            return over.with_value(base.value + [i for i in added if i.value not in seen])
    return _clean(over)


def _merge_keyed(base: list[Node], over: list[Node], key: Callable[[Node], Hashable]) -> list[Node]:
    out = {key(item): item for item in base}
    for item in over:
        out[key(item)] = item
    return list(out.values())


def _driver_changes(base: Node, over: Node) -> bool:
    old, new = base.get("driver"), over.get("driver")
    return old is not None and new is not None and old.value != new.value


def _clean(node: Node) -> Node:
    """Drop ``!reset`` entries and tags from a value that merges with nothing."""
    if isinstance(node.value, dict):
        node = node.with_value({k: _clean(v) for k, v in node.value.items() if v.tag != "reset"})
    elif isinstance(node.value, list):
        node = node.with_value([_clean(v) for v in node.value])
    node.tag = None
    return node
