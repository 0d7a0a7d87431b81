"""`shoal service ...`, `shoal node inspect|ps|update`: Docker's verbs, flags and output."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from agent import control
from agent.cli.convergence import follow
from agent.cli.output import for_each, format_inspect, inspect_json, print_error, render
from agent.cli.parser import ShoalParser
from agent.model.errors import ShoalError
from agent.model.limits import check_replicas
from agent.paths import DataDir

__all__ = [
    "SERVICE_COLUMNS",
    "TASK_COLUMNS",
    "TASK_FIELDS",
    "TASK_FILTERS",
    "fetch",
    "filter_flag",
    "listing_flags",
    "register",
    "task_rows",
]

SERVICE_COLUMNS = [
    ("ID", "short_id"),
    ("NAME", "name"),
    ("MODE", "mode"),
    ("REPLICAS", "replicas"),
    ("IMAGE", "image"),
    ("PORTS", "ports"),
]
TASK_COLUMNS = [
    ("ID", "short_id"),
    ("NAME", "name"),
    ("IMAGE", "image"),
    ("NODE", "node"),
    ("DESIRED STATE", "desired"),
    ("CURRENT STATE", "current_state"),
    ("ERROR", "error_text"),
    ("PORTS", "ports"),
]
TASK_FIELDS = {"DesiredState": "desired"}  # as the table shows it: Running, Shutdown, Complete


def _call(data: DataDir, cmd: str, args: dict[str, Any] | None = None) -> Any:
    return control.call(data.socket, cmd, args or {})


def fetch(data: DataDir, ref: str) -> Callable[[], tuple[dict[str, Any], list[dict[str, Any]]]]:
    def fetch() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return _call(data, "service-inspect", {"service": ref}), _call(
            data, "service-ps", {"service": ref}
        )

    return fetch


def task_rows(tasks: list[dict[str, Any]], *, no_trunc: bool) -> list[dict[str, Any]]:
    rows = []
    previous = None
    for t in tasks:
        name = t["name"] if t["name"] != previous else f" \\_ {t['name']}"
        previous = t["name"]
        error = t["error"]
        if error and not no_trunc and len(error) > 30:
            error = error[:29] + "…"
        rows.append(
            {
                **t,
                "short_id": t["id"] if no_trunc else t["id"][:12],
                "name": name,
                "desired": str(t.get("desired") or t["desired_state"]).capitalize(),
                "error_text": f'"{error}"' if error else "",
            }
        )
    return rows


# service -------------------------------------------------------------------------------------
def cmd_service_create(a: argparse.Namespace, data: DataDir) -> int:
    from agent.cli.createflags import spec_from_create

    for attempt in range(5):
        spec = spec_from_create(a)
        try:
            created = _call(data, "service-create", {"spec": spec.to_dict()})
            break
        except ShoalError as exc:
            # a generated name may be taken already: pick another (a given one is final)
            if a.name is not None or "already exists" not in str(exc) or attempt == 4:
                raise
    print(created["id"])
    if a.detach or a.quiet:
        return 0
    return follow(fetch(data, created["id"]))


def cmd_service_update(a: argparse.Namespace, data: DataDir) -> int:
    from agent.cli.updateflags import apply_update
    from agent.model.spec import ServiceSpec, SpecError

    info = _call(data, "service-spec", {"service": a.service})
    if getattr(a, "rollback", False):
        _call(data, "service-rollback", {"service": info["id"]})
        print(info["name"])
        if a.detach or a.quiet:
            return 0
        return follow(fetch(data, info["id"]), expect="rollback")
    try:
        spec = ServiceSpec.from_dict(info["spec"])
    except SpecError as exc:
        raise ShoalError(f"the service's spec is malformed: {exc}") from None
    new = apply_update(spec, a)
    result = _call(
        data,
        "service-update",
        {"service": info["id"], "spec": new.to_dict(), "version": info["spec_version"]},
    )
    print(info["name"])
    if a.detach or a.quiet:
        return 0
    after = _call(data, "service-inspect", {"service": info["id"]})
    updating = (after.get("UpdateStatus") or {}).get("State") == "updating" and result["changed"]
    return follow(fetch(data, info["id"]), expect="update" if updating else "")


def cmd_service_rollback(a: argparse.Namespace, data: DataDir) -> int:
    info = _call(data, "service-spec", {"service": a.service})
    _call(data, "service-rollback", {"service": info["id"]})
    print(info["name"])
    if a.detach or a.quiet:
        return 0
    return follow(fetch(data, info["id"]), expect="rollback")


def cmd_service_scale(a: argparse.Namespace, data: DataDir) -> int:
    failed = 0
    targets = []
    for item in a.pairs:
        name, sep, count = item.partition("=")
        if not sep or not count.isdigit():
            print_error(f"invalid scale specifier {item!r}: expected SERVICE=REPLICAS")
            failed += 1
            continue
        try:
            check_replicas(int(count), f"replicas of {name}")
            result = _call(data, "service-scale", {"service": name, "replicas": int(count)})
        except ShoalError as exc:
            print_error(exc)
            failed += 1
            continue
        print(f"{name} scaled to {count}")
        targets.append(result["id"])
    if not a.detach:
        for ident in targets:
            failed += follow(fetch(data, ident)) != 0
    return 1 if failed else 0


def cmd_service_ls(a: argparse.Namespace, data: DataDir) -> int:
    rows = _call(data, "service-ls", {"filters": a.filter or []})
    for r in rows:
        r["short_id"] = r["id"][:12]
    print(render(rows, SERVICE_COLUMNS, a.format, quiet_key="id", quiet=a.quiet))
    return 0


def cmd_service_ps(a: argparse.Namespace, data: DataDir) -> int:
    out: list[dict[str, Any]] = []
    for ref in a.services:
        tasks = _call(data, "service-ps", {"service": ref, "filters": a.filter or []})
        out += task_rows(tasks, no_trunc=a.no_trunc)
    print(render(out, TASK_COLUMNS, a.format, quiet_key="id", quiet=a.quiet, fields=TASK_FIELDS))
    return 0


def cmd_service_inspect(a: argparse.Namespace, data: DataDir) -> int:
    objs = [_call(data, "service-inspect", {"service": ref}) for ref in a.services]
    if a.pretty:
        from agent.cli.pretty import service_pretty

        print("\n\n".join(service_pretty(o) for o in objs))
        return 0
    print(format_inspect(objs, a.format) if a.format else inspect_json(objs))
    return 0


def cmd_service_rm(a: argparse.Namespace, data: DataDir) -> int:
    def rm(ref: str) -> None:
        _call(data, "service-rm", {"service": ref})
        print(ref)

    return for_each(a.services, rm)


def register(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    service = sub.add_parser("service", help="manage services").add_subparsers(
        dest="sub", metavar="COMMAND", required=True
    )
    sp = cmd(service, "create", cmd_service_create, "create a new service")
    _defer(sp, _create_flags)
    sp = cmd(service, "update", cmd_service_update, "update a service")
    _defer(sp, _update_flags)
    sp = cmd(service, "rollback", cmd_service_rollback, "revert a service to its previous spec")
    _detach(sp)
    sp.add_argument("service", metavar="SERVICE")
    sp = cmd(service, "scale", cmd_service_scale, "scale replicated services")
    sp.add_argument("-d", "--detach", action="store_true", help="exit immediately")
    sp.add_argument("pairs", nargs="+", metavar="SERVICE=REPLICAS")
    sp = cmd(service, "ls", cmd_service_ls, "list services")
    listing_flags(sp)
    filter_flag(sp, "id, label, mode, name")
    sp = cmd(service, "ps", cmd_service_ps, "list the tasks of services")
    listing_flags(sp)
    sp.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    filter_flag(sp, TASK_FILTERS)
    sp.add_argument("services", nargs="+", metavar="SERVICE")
    sp = cmd(service, "inspect", cmd_service_inspect, "show services in detail")
    sp.add_argument("-f", "--format", help="Go-style template, e.g. '{{.Spec.Name}}'")
    sp.add_argument("--pretty", action="store_true", help="human-readable")
    sp.add_argument("services", nargs="+", metavar="SERVICE")
    sp = cmd(service, "logs", _service_logs, "show the output of a service's tasks")
    _defer(sp, _logs_flags)
    sp = cmd(service, "rm", cmd_service_rm, "remove services")
    sp.add_argument("services", nargs="+", metavar="SERVICE")


def _defer(sp: argparse.ArgumentParser, add: Callable[[argparse.ArgumentParser], None]) -> None:
    if isinstance(sp, ShoalParser):
        sp.defer(add)
    else:
        add(sp)


def _create_flags(sp: argparse.ArgumentParser) -> None:
    from agent.cli.createflags import add_create_flags

    add_create_flags(sp)


def _update_flags(sp: argparse.ArgumentParser) -> None:
    from agent.cli.updateflags import add_update_flags

    add_update_flags(sp)


def _logs_flags(sp: argparse.ArgumentParser) -> None:
    from agent.cli.logs import add_logs_flags

    add_logs_flags(sp)


def _service_logs(a: argparse.Namespace, data: DataDir) -> int:
    from agent.cli.logs import cmd_service_logs

    return cmd_service_logs(a, data)


def listing_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--format", help="table (default), json, or a Go-style template")
    sp.add_argument("-q", "--quiet", action="store_true", help="only display ids")


TASK_FILTERS = "desired-state (running, shutdown, accepted), id, name, node"


def filter_flag(sp: argparse.ArgumentParser, keys: str) -> None:
    """Docker's ``-f/--filter key=value``, repeatable (the manager checks the keys)."""
    sp.add_argument(
        "-f",
        "--filter",
        action="append",
        metavar="KEY=VALUE",
        help=f"keep what matches; a key given again matches either value ({keys})",
    )


def _detach(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-d", "--detach", action="store_true", help="exit immediately")
    sp.add_argument("-q", "--quiet", action="store_true", help="suppress progress output")
