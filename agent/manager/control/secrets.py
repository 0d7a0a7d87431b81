"""Secrets and configs: `shoal secret|config create|ls|inspect|rm`, and how services refer to
them. Data travels through the control socket as base64; a secret's data never comes back out
(Docker's rule), a config's does."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Awaitable, Callable
from typing import Any

from agent.manager.control.filters import OBJECTS
from agent.manager.store import Config, Secret, Service, Store, Tx, View
from agent.model.errors import ShoalError
from agent.model.limits import MAX_OBJECT_BYTES, check_labels
from agent.model.registry import bind
from agent.model.spec import ServiceSpec
from agent.model.stamps import now_text
from certs.identity import new_node_id

__all__ = ["MAX_SIZE", "SecretsAPI", "resolve_refs", "users_of"]

MAX_SIZE = MAX_OBJECT_BYTES
_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,63}")

Obj = Secret | Config


def _kind(cls: type[Obj]) -> str:
    return "secret" if cls is Secret else "config"


def find(view: View, cls: type[Obj], ref: str) -> Obj:
    items = view.list(cls)
    for o in items:
        if o.id == ref or o.name == ref:
            return o
    matches = [o for o in items if o.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    raise ShoalError(f"{_kind(cls)} {ref} not found")


def users_of(view: View, cls: type[Obj], obj: Obj) -> list[str]:
    """The names of the services that use ``obj``."""
    out = []
    for s in view.list(Service):
        c = s.spec.task_template.container
        refs: list[tuple[str, str]] = (
            [(r.secret_id, r.source) for r in c.secrets]
            if cls is Secret
            else [(r.config_id, r.source) for r in c.configs]
        )
        if any(ident == obj.id or source == obj.name for ident, source in refs):
            out.append(s.name)
    return sorted(out)


def resolve_refs(view: View, spec: ServiceSpec) -> ServiceSpec:
    """The spec with every secret and config reference pointing at an existing object by id."""
    c = spec.task_template.container
    secrets = [
        dataclasses.replace(ref, secret_id=_lookup(view, Secret, ref.source).id)
        for ref in c.secrets
    ]
    configs = [
        dataclasses.replace(cref, config_id=_lookup(view, Config, cref.source).id)
        for cref in c.configs
    ]
    container = dataclasses.replace(c, secrets=tuple(secrets), configs=tuple(configs))
    return dataclasses.replace(
        spec, task_template=dataclasses.replace(spec.task_template, container=container)
    )


def _lookup(view: View, cls: type[Obj], name: str) -> Obj:
    for o in view.list(cls):
        if o.name == name:
            return o
    raise ShoalError(f"{_kind(cls)} not found: {name}")


def _data(args: dict[str, Any]) -> bytes:
    raw = args.get("data")
    if not isinstance(raw, str):
        raise ShoalError("data is required (base64)")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ShoalError("data is not valid base64") from None
    if len(data) > MAX_SIZE:
        raise ShoalError(
            f"the data is {len(data):,} bytes; at most {MAX_SIZE:,} (500 KB) are allowed:"
            " split it into several"
        )
    if not data:
        raise ShoalError("the data is empty")
    return data


class SecretsAPI:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.secret_create = self._create(Secret)
        self.secret_ls = self._ls(Secret)
        self.secret_rm = self._rm(Secret)
        self.config_create = self._create(Config)
        self.config_ls = self._ls(Config)
        self.config_rm = self._rm(Config)
        self.commands: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = bind(self, "secrets")

    def _create(self, cls: type[Obj]) -> Callable[[dict[str, Any]], Awaitable[Any]]:
        async def create(args: dict[str, Any]) -> dict[str, Any]:
            name = args.get("name")
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise ShoalError(
                    f"invalid {_kind(cls)} name {name!r}: use letters, digits, '-', '_' and '.'"
                    " (at most 64, starting with a letter or digit)"
                )
            labels = args.get("labels") or {}
            if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
            ):
                raise ShoalError("labels must map text to text")
            check_labels(labels, f"labels of {_kind(cls)} {name}")
            data = _data(args)
            stamp = now_text()
            obj = cls(
                id=new_node_id(), name=name, data=data, labels=labels, created=stamp, updated=stamp
            )

            def put(tx: Tx) -> None:
                if any(o.name == name for o in tx.list(cls)):
                    raise ShoalError(f"{_kind(cls)} {name} already exists")
                tx.put(obj)
                tx.answer(answer)

            answer = {"id": obj.id, "name": name}
            await self.store.update(put)
            return answer

        return create

    def _ls(self, cls: type[Obj]) -> Callable[[dict[str, Any]], Awaitable[Any]]:
        async def ls(args: dict[str, Any]) -> list[dict[str, Any]]:
            view = self.store.view()
            chosen = OBJECTS.select(view.list(cls), args.get("filters"))
            return [self._row(view, cls, o) for o in sorted(chosen, key=lambda o: (o.name, o.id))]

        return ls

    def _row(self, view: View, cls: type[Obj], o: Obj) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": o.id,
            "name": o.name,
            "labels": dict(o.labels),
            "size": len(o.data),
            "created": o.created,
            "updated": o.updated,
            "services": users_of(view, cls, o),
        }
        if cls is Config:
            row["data"] = base64.b64encode(o.data).decode()
        return row

    def _rm(self, cls: type[Obj]) -> Callable[[dict[str, Any]], Awaitable[Any]]:
        async def rm(args: dict[str, Any]) -> dict[str, Any]:
            ref = args.get("ref")
            if not isinstance(ref, str) or not ref:
                raise ShoalError(f"which {_kind(cls)}?")
            result: dict[str, Any] = {}

            def remove(tx: Tx) -> None:
                o = find(tx, cls, ref)
                users = users_of(tx, cls, o)
                if users:
                    raise ShoalError(
                        f"{_kind(cls)} {o.name} is in use by the following service(s):"
                        f" {', '.join(users)}"
                    )
                tx.delete(cls, o.id)
                result.update(id=o.id, name=o.name)

            await self.store.update(remove)
            return result

        return rm
