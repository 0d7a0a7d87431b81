"""Files a stack file refers to: ``.env``, ``env_file``, and ``file:`` secrets and configs.

Relative paths are relative to the directory of the first stack file, as with docker/cli. A
stack that arrives as text (published to the cluster's stack topic) has no directory, and no
file is ever read for it: reading would hand the receiving manager's own files to whoever
sent the stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from stacks.dotenv import parse_dotenv
from stacks.errors import StackError
from stacks.kinds import Ctx, join
from stacks.loader import MAX_FILE_BYTES, decode_text, read_bounded
from stacks.node import Node

__all__ = ["Files", "read_dotenv", "resolve_env_files"]


class Files:
    """Read access to files beside the stack file; ``directory`` None forbids every read."""

    def __init__(self, directory: Path | None, environ: Mapping[str, str]) -> None:
        self.directory = directory
        self.environ = environ

    def expand_user(self, node: Node, path: str, ctx: Ctx, value: str) -> str:
        if not value.startswith("~"):
            return value
        home = self.environ.get("HOME")
        if home is None:
            ctx.warn(node, path, "cannot expand '~', because the environment lacks HOME")
            return value
        return home + value[1:]

    def bind_source(self, node: Node, path: str, ctx: Ctx, value: str) -> str | None:
        """A bind mount's source as an absolute path on the nodes."""
        value = self.expand_user(node, path, ctx, value)
        if value.startswith("/"):
            return value
        if self.directory is None:
            ctx.fail(
                node,
                path,
                f"the bind mount source {value!r} is relative to the stack "
                "file's directory, which a stack sent as text does not have; "
                "use an absolute path",
            )
            return None
        return str((self.directory / value).resolve())

    def read(self, node: Node, path: str, what: str, value: str) -> bytes:
        """The bytes of a file named in the stack; StackError when it cannot be read."""
        if self.directory is None:
            raise node.error(
                path,
                f"{what} {value!r} is read from the deploying machine: run "
                "`shoal stack deploy -c FILE NAME` on a machine that has "
                "the file, or use 'external' or 'environment' instead",
            )
        if value.startswith("~") and "HOME" in self.environ:
            value = self.environ["HOME"] + value[1:]
        file = self.directory / value
        try:
            with file.open("rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise node.error(path, f"cannot read {what} {value!r}: {reason}") from exc
        if len(data) > MAX_FILE_BYTES:
            raise node.error(
                path,
                f"{what} {value!r} is larger than shoal's limit of 1 MiB "
                f"({MAX_FILE_BYTES} bytes) for a file a stack names",
            )
        return data


def read_dotenv(directory: Path | None, environ: Mapping[str, str]) -> dict[str, str]:
    """Variables from ``.env`` beside the first stack file (none when there is no such file)."""
    if directory is None:
        return {}
    file = directory / ".env"
    if not file.exists():
        return {}
    data = read_bounded(file, ".env file")
    return parse_dotenv(decode_text(data, ".env"), ".env", environ)


def resolve_env_files(document: Node, files: Files, ctx: Ctx) -> None:
    """Fold each service's ``env_file`` into its ``environment`` (explicit values win)."""
    services = document.get("services")
    if services is None or services.tag == "reset":
        return
    for name, service in services.items():
        if service.tag == "reset":
            continue
        entries = service.as_map().pop("env_file", None)
        if entries is None:
            continue
        where = join(join("services", name), "env_file")
        values: dict[str, Node] = {}
        for entry in entries.as_list():
            file_name = entry.as_map()["path"].value
            required = entry.as_map()["required"].value
            if not required and files.directory is not None:
                if not (files.directory / file_name).is_file():
                    continue
            try:
                data = files.read(entry, where, "env_file", file_name)
                text = decode_text(data, file_name)
                parsed = parse_dotenv(text, file_name, files.environ)
            except StackError as exc:
                ctx.errors.append(exc)
                continue
            values.update({k: entry.with_value(v) for k, v in parsed.items()})
        explicit = service.get("environment")
        if explicit is not None:
            values.update(explicit.as_map())
        service.as_map()["environment"] = (explicit or entries).with_value(values)
