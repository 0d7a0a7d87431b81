"""A node's routing table as it arrives off the network, checked before anything of it is used.

The leader computes one table per node and publishes it retained on ``node/<id>/net``.
:func:`check_table` says why a table is not one the node can apply, or None. Everything the
node later reads from an accepted table has the type it expects: addresses are strings that
parse, ports are integers 1-65535, VXLAN ids integers 1 to 2^24 - 1, lists are lists and
mappings are mappings, so applying an accepted table never trips over its input.
"""

from __future__ import annotations

import ipaddress
from typing import Any

__all__ = ["check_table"]

_MAX_VNI = 2**24 - 1


class _Bad(ValueError):
    pass


def check_table(table: object) -> str | None:
    """Why ``table`` is not a routing table this node can apply (None when it is)."""
    if not isinstance(table, dict):
        return "not a mapping"
    for key, kind in (("networks", dict), ("ingress", dict), ("host_ports", list), ("tasks", dict)):
        if table.get(key) is not None and not isinstance(table[key], kind):
            return f"{key}: expected a {kind.__name__}"
    where = "table"
    try:
        for ident, net in (table.get("networks") or {}).items():
            where = f"networks.{ident}"
            _text(ident, "network id")
            _network(_mapping(net, "network"))
            for name, answers in _mapping(net.get("dns", {}), "dns").items():
                where = f"networks.{ident}.dns.{name}"
                _text(name, "name")
                for answer in _list(answers, "addresses"):
                    _ip(answer)
            for i, v in enumerate(_list(net.get("vips") or [], "vips")):
                where = f"networks.{ident}.vips[{i}]"
                _ip(_mapping(v, "vip")["vip"])
                for b in _list(v.get("backends") or [], "backends"):
                    _ip(b)
        where = "ingress"
        ingress = table.get("ingress") or {}
        if ingress.get("subnet"):
            _network(ingress)
        if ingress.get("node_address") is not None:
            _ip(ingress["node_address"])
        for i, p in enumerate(_list(ingress.get("ports") or [], "ports")):
            where = f"ingress.ports[{i}]"
            _port_entry(_mapping(p, "port"))
            for b in _list(p.get("backends") or [], "backends"):
                _ip(_mapping(b, "backend")["address"])
        for task_id, interfaces in (table.get("tasks") or {}).items():
            where = f"tasks.{task_id}"
            _text(task_id, "task id")
            for i in _list(interfaces, "interfaces"):
                _text(_mapping(i, "interface")["network"], "network")
                _ip(i["address"])
        for i, p in enumerate(table.get("host_ports") or []):
            where = f"host_ports[{i}]"
            _port_entry(_mapping(p, "port"))
            _text(p["task"], "task")
            if p.get("address") is not None:
                _ip(p["address"])
    except KeyError as exc:
        return f"{where}: {exc} is missing"
    except (_Bad, ValueError) as exc:
        return f"{where}: {exc}"
    return None


def _mapping(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"{what}: expected a mapping, found {type(value).__name__}")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Bad(f"{what}: expected a list, found {type(value).__name__}")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{what}: expected a string, found {type(value).__name__}")
    return value


def _ip(value: object) -> None:
    ipaddress.ip_address(_text(value, "address"))


def _integer(value: object, what: str, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise _Bad(f"{what} must be an integer {low}-{high}, not {value!r}"[:200])


def _port_entry(port: dict[str, Any]) -> None:
    if port["protocol"] not in ("tcp", "udp"):
        raise _Bad(f"protocol must be tcp or udp, not {port['protocol']!r}"[:200])
    _integer(port["published"], "published", 1, 65535)
    _integer(port["target"], "target", 1, 65535)
    if not isinstance(port.get("proxy_protocol", False), bool):
        raise _Bad("proxy_protocol must be true or false")


def _network(net: dict[str, Any]) -> None:
    ipaddress.ip_network(_text(net["subnet"], "subnet"))
    _ip(net["gateway"])
    _integer(net["vni"], "vni", 1, _MAX_VNI)
    for p in _list(net.get("remote") or [], "remote"):
        _ip(_mapping(p, "peer")["address"])
        for via in _list(p.get("via") or [], "via"):
            _text(via, "via")
