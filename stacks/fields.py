"""Kinds for the Compose keys that have a short and a long syntax.

Each returns one canonical shape, so merging and converting never see the short forms:

* ports: a list of ``{target, published, protocol, mode}`` (ranges expanded);
* volumes: a list of ``{type, source, target, read_only, bind?, volume?, tmpfs?}``;
* secrets and configs of a service: a list of ``{source, target?, uid?, gid?, mode?}``;
* networks of a service: a mapping of name to ``{aliases?, driver_opts?}``;
* devices: a list of ``{source, target, permissions}``; ulimits: name to ``{soft, hard}``;
* extra_hosts: a mapping of host name to address;
* healthcheck test: a list starting with NONE, CMD or CMD-SHELL.
"""

from __future__ import annotations

import ipaddress
import re

from stacks.kinds import (
    Bool,
    Ctx,
    Ignored,
    Int,
    KeyValues,
    Kind,
    Obj,
    Parsed,
    Str,
    StrList,
    join,
)
from stacks.node import Node, describe
from stacks.values import PROPAGATIONS, parse_bytes, parse_device, parse_port, parse_volume

__all__ = [
    "Constraints",
    "Devices",
    "EnvFiles",
    "External",
    "ExtraHosts",
    "FileMode",
    "FileRefs",
    "HealthTest",
    "Ports",
    "Preferences",
    "Restart",
    "ServiceNetworks",
    "ServiceVolumes",
    "Ulimit",
    "parse_mode",
    "parse_subnet",
]


def _text(node: Node) -> str | None:
    if isinstance(node.value, str):
        return node.value
    if isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.raw or str(node.value)
    return None


def _wrap(node: Node, values: dict[str, object]) -> Node:
    """A mapping node whose children all point at ``node``'s place."""
    return node.with_value({k: node.with_value(v) for k, v in values.items()})


def parse_mode(value: object) -> int:
    """File permissions: an int (YAML reads 0440 as octal) or an octal string."""
    mode: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"(0o?)?[0-7]{1,4}", value.strip()):
        mode = int(value.strip().removeprefix("0o") or "0", 8)
    if mode is None or not 0 <= mode <= 0o7777:
        raise ValueError(f"expected file permissions like 0440, found {value!r}")
    return mode


def parse_subnet(value: object) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise ValueError(f"expected a subnet like '10.0.9.0/24', found {value!r}") from None


FileMode = Parsed(parse_mode)


def _host_ip_warning(
    ctx: Ctx, node: Node, path: str, ip: str, published: int, target: int, protocol: str
) -> None:
    if not ip or ipaddress.ip_address(ip).is_unspecified:
        return
    host = f"[{ip}]" if ":" in ip else ip
    ctx.warn(
        node,
        path,
        f"ignoring IP-address ({host}:{published or ''}:{target}/{protocol}) "
        "service will listen on '0.0.0.0'",
    )


def _port_post(node: Node, path: str, ctx: Ctx) -> Node | None:
    fields = node.as_map()
    port = {
        "target": fields["target"].value,
        "published": fields["published"].value if "published" in fields else 0,
        "protocol": fields["protocol"].value if "protocol" in fields else "tcp",
        "mode": fields["mode"].value if "mode" in fields else "ingress",
    }
    if "host_ip" in fields:
        try:
            _host_ip_warning(
                ctx,
                node,
                path,
                fields["host_ip"].value,
                port["published"],
                port["target"],
                port["protocol"],
            )
        except ValueError:
            ctx.fail(
                fields["host_ip"],
                join(path, "host_ip"),
                f"expected an IP address, found {describe(fields['host_ip'])}",
            )
            return None
    return _wrap(node, port)


_PORT_LONG = Obj(
    {
        "target": Int(min=1, max=65535),
        "published": Int(min=0, max=65535),
        "protocol": Str(choices=("tcp", "udp", "sctp")),
        "mode": Str(choices=("ingress", "host")),
        "name": Str(),
        "host_ip": Str(),
        "app_protocol": Ignored(),
    },
    required=("target",),
    post=_port_post,
)


class ShortOrLong(Kind):
    """A list whose items are each a map in the long syntax (``long``) or a short string that
    :meth:`short` parses into zero or more items of the same shape."""

    what = ""
    long: Kind

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        if not isinstance(node.value, list):
            ctx.fail(node, path, f"expected a list of {self.what}, found {describe(node)}")
            return None
        out: list[Node] = []
        for i, item in enumerate(node.value):
            where = f"{path}[{i}]"
            if isinstance(item.value, dict):
                found = self.long.check(item, where, ctx)
                out.extend([found] if found is not None else [])
            else:
                out.extend(self.short(item, where, ctx))
        return node.with_value(out)

    def short(self, item: Node, path: str, ctx: Ctx) -> list[Node]:
        raise NotImplementedError


class Ports(ShortOrLong):
    what = "ports"
    long = _PORT_LONG

    def short(self, item: Node, path: str, ctx: Ctx) -> list[Node]:
        text = _text(item)
        if text is None:
            ctx.fail(item, path, f"expected a port like '8080:80', found {describe(item)}")
            return []
        try:
            entries = parse_port(text)
        except ValueError as exc:
            ctx.fail(item, path, str(exc))
            return []
        out: list[Node] = []
        for e in entries:
            _host_ip_warning(ctx, item, path, e.host_ip, e.published, e.target, e.protocol)
            out.append(
                _wrap(
                    item,
                    {
                        "target": e.target,
                        "published": e.published,
                        "protocol": e.protocol,
                        "mode": "ingress",
                    },
                )
            )
        return out


def _volume_post(node: Node, path: str, ctx: Ctx) -> Node | None:
    fields = node.as_map()
    kind = fields["type"].value
    source = fields["source"].value if "source" in fields else ""
    target = fields["target"].value
    problem = None
    if not target.startswith("/"):
        problem = f"the target {target!r} must be an absolute path"
    elif kind == "bind" and not source:
        problem = "a bind mount needs a 'source' path on the node"
    elif kind == "tmpfs" and source:
        problem = "a tmpfs mount takes no 'source'"
    for option in ("bind", "volume", "tmpfs"):
        if option in fields and option != kind:
            problem = problem or f"{option} options are incompatible with type {kind}"
    if problem:
        ctx.fail(node, path, problem)
        return None
    fields.setdefault("source", node.with_value(""))
    fields.setdefault("read_only", node.with_value(False))
    return node


_VOLUME_LONG = Obj(
    {
        "type": Str(choices=("bind", "volume", "tmpfs")),
        "source": Str(),
        "target": Str(nonempty=True),
        "read_only": Bool(),
        "consistency": Ignored(),
        "bind": Obj(
            {
                "propagation": Str(choices=PROPAGATIONS),
                "create_host_path": Ignored(),
                "selinux": Ignored(),
            }
        ),
        "volume": Obj({"nocopy": Bool(), "subpath": Ignored()}),
        "tmpfs": Obj({"size": Parsed(parse_bytes), "mode": FileMode}),
    },
    required=("type", "target"),
    post=_volume_post,
)


class ServiceVolumes(ShortOrLong):
    what = "volumes"
    long = _VOLUME_LONG

    def short(self, item: Node, path: str, ctx: Ctx) -> list[Node]:
        if not isinstance(item.value, str):
            ctx.fail(item, path, f"expected a volume like 'data:/data', found {describe(item)}")
            return []
        volume = self._parse(item, path, ctx)
        return [volume] if volume is not None else []

    def _parse(self, item: Node, path: str, ctx: Ctx) -> Node | None:
        try:
            entry = parse_volume(item.value)
        except ValueError as exc:
            ctx.fail(item, path, str(exc))
            return None
        if not entry.target.startswith("/"):
            ctx.fail(item, path, f"the target {entry.target!r} must be an absolute path")
            return None
        volume = _wrap(
            item,
            {
                "type": entry.type,
                "source": entry.source,
                "target": entry.target,
                "read_only": entry.read_only,
            },
        )
        if entry.propagation:
            volume.as_map()["bind"] = _wrap(item, {"propagation": entry.propagation})
        if entry.nocopy:
            volume.as_map()["volume"] = _wrap(item, {"nocopy": True})
        return volume


_FILE_REF = Obj(
    {
        "source": Str(nonempty=True),
        "target": Str(nonempty=True),
        "uid": Str(numbers=True),
        "gid": Str(numbers=True),
        "mode": FileMode,
    },
    required=("source",),
)


class FileRefs(Kind):
    """A service's secrets or configs: names, or mappings with ``source`` and file options."""

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        if not isinstance(node.value, list):
            ctx.fail(node, path, f"expected a list, found {describe(node)}")
            return None
        out: list[Node] = []
        for i, item in enumerate(node.value):
            if isinstance(item.value, str) and item.value:
                out.append(_wrap(item, {"source": item.value}))
                continue
            ref = _FILE_REF.check(item, f"{path}[{i}]", ctx)
            out.extend([ref] if ref is not None else [])
        return node.with_value(out)


class HealthTest(Kind):
    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        if isinstance(node.value, str):
            return node.with_value([node.with_value("CMD-SHELL"), node])
        words = StrList().check(node, path, ctx)
        if words is None:
            return None
        first = words.as_list()[0].value if words.as_list() else None
        if first not in ("NONE", "CMD", "CMD-SHELL"):
            ctx.fail(
                node,
                path,
                "expected a string, or a list starting with 'CMD', "
                f"'CMD-SHELL' or 'NONE', found {describe(first or [])}",
            )
            return None
        if first != "NONE" and len(words.as_list()) < 2:
            ctx.fail(node, path, f"expected a command after {first!r}")
            return None
        return words


class Devices(Kind):
    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        words = StrList().check(node, path, ctx)
        if words is None:
            return None
        out = []
        for i, item in enumerate(words.as_list()):
            try:
                host, container, permissions = parse_device(item.value)
            except ValueError as exc:
                ctx.fail(item, f"{path}[{i}]", str(exc))
                continue
            out.append(
                _wrap(item, {"source": host, "target": container, "permissions": permissions})
            )
        return node.with_value(out)


_NETWORK_REF = Obj(
    {
        "aliases": StrList(nonempty=True),
        "driver_opts": KeyValues(list_ok=False),
        "ipv4_address": Ignored(),
        "ipv6_address": Ignored(),
        "link_local_ips": Ignored(),
        "mac_address": Ignored(),
        "priority": Ignored(),
        "gw_priority": Ignored(),
    },
    null_ok=True,
)


class ServiceNetworks(Kind):
    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        if isinstance(node.value, list):
            names = StrList(nonempty=True).check(node, path, ctx)
            if names is None:
                return None
            return node.with_value({n.value: n.with_value({}) for n in names.as_list()})
        if not isinstance(node.value, dict):
            ctx.fail(
                node, path, f"expected a list or a mapping of networks, found {describe(node)}"
            )
            return None
        out = {}
        for name, ref in node.value.items():
            checked = _NETWORK_REF.check(ref, join(path, name), ctx)
            if checked is not None:
                out[name] = checked
        return node.with_value(out)


def _ulimit_post(node: Node, path: str, ctx: Ctx) -> Node | None:
    soft, hard = node.as_map()["soft"].value, node.as_map()["hard"].value
    if soft > hard:
        ctx.fail(node, path, f"the soft limit {soft} is above the hard limit {hard}")
        return None
    return node


_ULIMIT_LONG = Obj(
    {"soft": Int(min=-1), "hard": Int(min=-1)}, required=("soft", "hard"), post=_ulimit_post
)


class Ulimit(Kind):
    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        if isinstance(node.value, dict):
            return _ULIMIT_LONG.check(node, path, ctx)
        single = Int(min=-1).check(node, path, ctx)
        return None if single is None else _wrap(node, {"soft": single.value, "hard": single.value})


class ExtraHosts(Kind):
    """``host:address`` or ``host=address`` strings, or a mapping of host to address."""

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        if isinstance(node.value, dict):
            pairs = KeyValues(list_ok=False).check(node, path, ctx)
            entries = [] if pairs is None else [(k, v) for k, v in pairs.items()]
        else:
            words = StrList().check(node, path, ctx)
            if words is None:
                return None
            entries = []
            for item in words.as_list():
                sep = "=" if "=" in item.value else ":"
                host, _, address = item.value.partition(sep)
                entries.append((host, item.with_value(address)))
        out = {}
        for host, address in entries:
            if not host or not address.value:
                ctx.fail(
                    address,
                    path,
                    "expected 'host:address', found "
                    f"{describe(host + ':' + (address.value or ''))}",
                )
                continue
            out[host] = address
        return node.with_value(out)


_CONSTRAINT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(==|!=)\s*(\S.*?)\s*$")
_CONSTRAINT_KEYS = (
    "node.id",
    "node.hostname",
    "node.role",
    "node.platform.os",
    "node.platform.arch",
    "node.ip",
)


class Constraints(Kind):
    """Placement constraints like ``node.role==manager`` or ``node.labels.zone!=east``."""

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        words = StrList().check(node, path, ctx)
        if words is None:
            return None
        out = []
        for i, item in enumerate(words.as_list()):
            match = _CONSTRAINT.match(item.value)
            if match is None:
                ctx.fail(
                    item,
                    f"{path}[{i}]",
                    "expected a constraint like 'node.role==manager' "
                    f"or 'node.labels.zone!=east', found "
                    f"{describe(item)}",
                )
                continue
            key = match.group(1)
            if key not in _CONSTRAINT_KEYS and not key.startswith(
                ("node.labels.", "engine.labels.")
            ):
                ctx.fail(
                    item,
                    f"{path}[{i}]",
                    f"unknown constraint attribute {key!r}; use "
                    f"{', '.join(_CONSTRAINT_KEYS)}, node.labels.* "
                    "or engine.labels.*",
                )
                continue
            out.append(item.with_value(f"{key}{match.group(2)}{match.group(3)}"))
        return node.with_value(out)


_PREFERENCE = Obj({"spread": Str(nonempty=True)}, required=("spread",))


class Preferences(Kind):
    """``- spread: node.labels.zone`` entries, as ``spread=node.labels.zone`` strings."""

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        if not isinstance(node.value, list):
            ctx.fail(
                node,
                path,
                f"expected a list like '- spread: node.labels.zone', found {describe(node)}",
            )
            return None
        out = []
        for i, item in enumerate(node.value):
            checked = _PREFERENCE.check(item, f"{path}[{i}]", ctx)
            if checked is not None:
                out.append(item.with_value(f"spread={checked.as_map()['spread'].value}"))
        return node.with_value(out)


class EnvFiles(Kind):
    """``env_file``: a path, or a list of paths or of ``{path, required}``."""

    _LONG = Obj(
        {"path": Str(nonempty=True), "required": Bool(), "format": Ignored()}, required=("path",)
    )

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        items = [node] if isinstance(node.value, str) else node.value
        if not isinstance(items, list):
            ctx.fail(node, path, f"expected a path or a list of paths, found {describe(node)}")
            return None
        out = []
        for i, item in enumerate(items):
            where = path if item is node else f"{path}[{i}]"
            if isinstance(item.value, str) and item.value:
                out.append(_wrap(item, {"path": item.value, "required": True}))
                continue
            checked = self._LONG.check(item, where, ctx)
            if checked is not None:
                checked.as_map().setdefault("required", item.with_value(True))
                out.append(checked)
        return node.with_value(out)


_RESTART = re.compile(r"^(no|always|unless-stopped|on-failure)(?::(\d{1,9}))?$")


class Restart(Kind):
    """The service-level ``restart`` policy, used when ``deploy.restart_policy`` is absent.
    ``docker stack deploy`` warns that it ignores the key, and uses it all the same: so do we."""

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        ctx.unsupported["restart"] = None
        if isinstance(node.value, bool):  # YAML 1.1 reads a bare `no` as false
            text = None if node.value else "no"
        else:
            text = _text(node)
        match = _RESTART.match(text or "")
        if match is None or (match.group(2) and match.group(1) != "on-failure"):
            ctx.fail(
                node,
                path,
                "expected one of 'no', 'always', 'on-failure[:max-retries]' or "
                f"'unless-stopped', found {describe(node)}",
            )
            return None
        condition = {"no": "none", "on-failure": "on-failure"}.get(match.group(1), "any")
        return _wrap(node, {"condition": condition, "max_attempts": int(match.group(2) or 0)})


class External(Kind):
    """``external: true``, or the deprecated ``external: {name: ...}`` (a mapping node)."""

    _LONG = Obj({"name": Str(nonempty=True)})

    def check(self, node: Node, path: str, ctx: Ctx) -> Node | None:
        if isinstance(node.value, dict):
            return self._LONG.check(node, path, ctx)
        return Bool().check(node, path, ctx)
