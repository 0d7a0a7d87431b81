"""Compose files to a :class:`~stacks.model.StackSpec`: the whole pipeline.

For each file: parse (keeping lines and columns), check the version, substitute variables,
check every key and bring values to canonical form, fold ``env_file`` into ``environment``.
Then merge the files in order, and convert: services to :class:`~agent.model.spec.ServiceSpec`,
plus the networks, volumes, secrets and configs they use, all namespaced by the stack name.
Every problem in every file is reported together (:class:`~stacks.errors.StackErrors`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stacks.errors import StackError, StackErrors, StackWarning
from stacks.files import Files, read_dotenv, resolve_env_files
from stacks.interpolate import interpolate
from stacks.kinds import Ctx, join
from stacks.loader import Source, check_version, parse_yaml, read_sources
from stacks.merge import merge_documents
from stacks.model import (
    ConfigSpec,
    IPAMConfig,
    IPAMSpec,
    NetworkSpec,
    SecretSpec,
    StackSpec,
    VolumeSpec,
)
from stacks.node import Node, field_map, field_value
from stacks.schema import check_document, check_name
from stacks.services import Scope, build_service

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_SECRET_BYTES",
    "load_stack",
    "load_stack_text",
    "merged_config",
    "validate_stack_name",
]

MAX_SECRET_BYTES = 500 * 1024
MAX_CONFIG_BYTES = 1000 * 1024
_SECTIONS = ("networks", "volumes", "secrets", "configs")
_v = field_value
_map = field_map


def validate_stack_name(name: str) -> None:
    """Raise StackError unless ``name`` can prefix service names (``<stack>_<service>``)."""
    problem = check_name(name, "stack")
    if problem is None and len(name) > 61:
        problem = f"invalid stack name {name!r}: use at most 61 characters"
    if problem:
        raise StackError(problem)


def load_stack(
    files: Sequence[Path] | Sequence[tuple[str, str | bytes]],
    *,
    stack_name: str,
    environ: Mapping[str, str],
    base_dir: Path | None = None,
) -> StackSpec:
    """Load, merge and convert stack files given as paths or as (name, text) pairs.

    ``environ`` is the deploying environment for ``${VAR}`` substitution, overlaid on the
    ``.env`` file beside the first file. Files named in the stack are read relative to the
    first file's directory, or ``base_dir``; pairs have no directory unless ``base_dir`` is
    given, and then no file is read.
    """
    validate_stack_name(stack_name)
    sources = read_sources(files)
    directory = base_dir if base_dir is not None else sources[0].directory
    return _load(sources, stack_name, environ, directory)


def load_stack_text(
    text: str | bytes,
    *,
    stack_name: str,
    environ: Mapping[str, str] | None = None,
    filename: str = "stack.yml",
) -> StackSpec:
    """Load a stack that arrived as bytes (deploy by topic): nothing is read from disk."""
    validate_stack_name(stack_name)
    return _load([Source(name=filename, text=text)], stack_name, environ or {}, None)


def merged_config(files: Sequence[Path], *, environ: Mapping[str, str]) -> dict[str, Any]:
    """The files merged in order and interpolated, as `stack config` prints them."""
    sources = read_sources(files)
    merged, _, _, ctx = _merge(sources, environ, sources[0].directory)
    _raise(ctx)
    return dict(merged.plain())


def _merge(
    sources: list[Source], environ: Mapping[str, str], directory: Path | None
) -> tuple[Node, Files, dict[str, str], Ctx]:
    ctx = Ctx()
    try:
        env = {**read_dotenv(directory, environ), **environ}
    except StackError as exc:
        ctx.errors.append(exc)
        env = dict(environ)
    files = Files(directory, env)
    documents = []
    for source in sources:
        try:
            root = parse_yaml(source.text, source.name)
            check_version(root)
        except StackError as exc:
            ctx.errors.append(exc)
            continue
        errors = len(ctx.errors)
        document = check_document(interpolate(root, env, ctx.errors, ctx.warnings), ctx)
        if document is not None and len(ctx.errors) == errors:
            resolve_env_files(document, files, ctx)
            documents.append(document)
    _raise(ctx)
    return merge_documents(documents), files, env, ctx


def _load(
    sources: list[Source], stack: str, environ: Mapping[str, str], directory: Path | None
) -> StackSpec:
    merged, files, env, ctx = _merge(sources, environ, directory)
    spec = _convert(merged, stack, files, env, ctx)
    _raise(ctx)
    return spec


def _raise(ctx: Ctx) -> None:
    if len(ctx.errors) == 1:
        raise ctx.errors[0]
    if ctx.errors:
        raise StackErrors(ctx.errors)


def _convert(
    merged: Node, stack: str, files: Files, environ: Mapping[str, str], ctx: Ctx
) -> StackSpec:
    definitions = {
        section: (merged.get(section) or merged.with_value({})).as_map() for section in _SECTIONS
    }
    scope = Scope(stack=stack, definitions=definitions, files=files, environ=environ, ctx=ctx)
    services = (merged.get("services") or merged.with_value({})).as_map()
    if not services:
        ctx.fail(merged, "services", "no services defined; a stack needs at least one")
    specs = [build_service(name, service, scope) for name, service in sorted(services.items())]
    networks = [_network(key, scope) for key in sorted(scope.used["networks"])]
    volumes = [_volume(key, scope) for key in sorted(scope.used["volumes"])]
    secrets = [_secret(key, scope, "secrets") for key in sorted(definitions["secrets"])]
    configs = [_secret(key, scope, "configs") for key in sorted(definitions["configs"])]
    return StackSpec(
        name=stack,
        services=tuple(s for s in specs if s is not None),
        networks=tuple(networks),
        volumes=tuple(volumes),
        secrets=tuple(s for s in secrets if isinstance(s, SecretSpec)),
        configs=tuple(c for c in configs if isinstance(c, ConfigSpec)),
        warnings=_warnings(ctx),
    )


def _warnings(ctx: Ctx) -> tuple[StackWarning, ...]:
    """Docker's two summary warnings first, then the located ones, without repeats."""
    out: list[StackWarning] = []
    if ctx.unsupported:
        out.append(
            StackWarning(f"Ignoring unsupported options: {', '.join(sorted(ctx.unsupported))}")
        )
    if ctx.deprecated:
        details = "\n\n".join(f"{k}: {v}" for k, v in sorted(ctx.deprecated.items()))
        out.append(StackWarning(f"Ignoring deprecated options:\n\n{details}"))
    out.extend(dict.fromkeys(ctx.warnings))
    return tuple(out)


def _network(key: str, scope: Scope) -> NetworkSpec:
    definition = scope.definitions["networks"].get(key)
    name = scope.name_of("networks", key)
    if definition is None:  # the implicit "default" network
        return NetworkSpec(name=name, labels=scope.labels())
    if _v(definition, "external", False):
        return NetworkSpec(name=name, external=True)
    ipam = definition.get("ipam")
    return NetworkSpec(
        name=name,
        driver=_v(definition, "driver", "overlay"),
        driver_opts=_map(definition, "driver_opts"),
        labels=scope.labels(_map(definition, "labels")),
        attachable=_v(definition, "attachable", False),
        internal=_v(definition, "internal", False),
        enable_ipv6=_v(definition, "enable_ipv6", False),
        ipam=None
        if ipam is None
        else IPAMSpec(
            driver=_v(ipam, "driver", "default"),
            options=_map(ipam, "options"),
            config=tuple(
                IPAMConfig(
                    subnet=_v(pool, "subnet", ""),
                    ip_range=_v(pool, "ip_range", ""),
                    gateway=_v(pool, "gateway", ""),
                    aux_addresses=_map(pool, "aux_addresses"),
                )
                for pool in (ipam.get("config") or ipam.with_value([])).as_list()
            ),
        ),
    )


def _volume(key: str, scope: Scope) -> VolumeSpec:
    definition = scope.definitions["volumes"][key]
    name = scope.name_of("volumes", key)
    if _v(definition, "external", False):
        return VolumeSpec(name=name, external=True)
    return VolumeSpec(
        name=name,
        driver=_v(definition, "driver", "local"),
        driver_opts=_map(definition, "driver_opts"),
        labels=scope.labels(_map(definition, "labels")),
    )


def _secret(key: str, scope: Scope, section: str) -> SecretSpec | ConfigSpec | None:
    definition = scope.definitions[section][key]
    what = section[:-1]
    cls = SecretSpec if section == "secrets" else ConfigSpec
    name = scope.name_of(section, key)
    if _v(definition, "external", False):
        return cls(name=name, external=True)
    path = join(section, key)
    data = _secret_data(definition, path, scope, what)
    if data is None:
        return None
    limit = MAX_SECRET_BYTES if section == "secrets" else MAX_CONFIG_BYTES
    if not data or len(data) >= limit:
        scope.ctx.fail(
            definition,
            path,
            f"{what} data must be larger than 0 and less than "
            f"{limit // 1024} KB ({limit} bytes); found "
            f"{len(data)} bytes",
        )
        return None
    return cls(name=name, data=data, labels=scope.labels(_map(definition, "labels")))


def _secret_data(definition: Node, path: str, scope: Scope, what: str) -> bytes | None:
    file, variable = definition.get("file"), definition.get("environment")
    if file is not None:
        try:
            return scope.files.read(file, join(path, "file"), f"{what} file", file.value)
        except StackError as exc:
            scope.ctx.errors.append(exc)
            return None
    if variable is not None:
        value = scope.environ.get(variable.value)
        if value is None:
            scope.ctx.fail(
                variable,
                join(path, "environment"),
                f"environment variable {variable.value!r} is not set",
            )
            return None
        return value.encode()
    return str(_v(definition, "content", "")).encode()
