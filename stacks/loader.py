"""Reading stack files: YAML text to a located :class:`~stacks.node.Node` tree.

PyYAML's composer (with the safe resolver) gives nodes with marks; this module turns them into
Nodes itself so that every value keeps its line and column, anchors and aliases resolve, and
merge keys (``<<: *defaults``) apply with YAML's rules: explicit keys win over merged ones, and
earlier merged mappings win over later ones. Compose's ``!reset`` and ``!override`` tags are
kept on the node for the merge of several files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from stacks.errors import StackError
from stacks.node import Node, describe

__all__ = [
    "MAX_FILE_BYTES",
    "Source",
    "check_size",
    "check_version",
    "parse_yaml",
    "read_bounded",
    "read_sources",
]

MAX_FILE_BYTES = 1024 * 1024
"""The largest stack file (or ``.env``/``env_file``) read: real Compose files are a few KB."""
MAX_DEPTH = 100
MAX_VALUES = 200_000

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_CONSTRUCTORS = {
    "tag:yaml.org,2002:null": SafeConstructor.construct_yaml_null,
    "tag:yaml.org,2002:bool": SafeConstructor.construct_yaml_bool,
    "tag:yaml.org,2002:int": SafeConstructor.construct_yaml_int,
    "tag:yaml.org,2002:float": SafeConstructor.construct_yaml_float,
}
_COMPOSE_TAGS = {"!reset": "reset", "!override": "override"}
_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")


@dataclass(frozen=True, slots=True)
class Source:
    """One stack file: its name for messages, its text, and its directory if it has one."""

    name: str
    text: str | bytes
    directory: Path | None = None


def read_sources(files: Sequence[Path] | Sequence[tuple[str, str | bytes]]) -> list[Source]:
    """Read files given as paths, or take (name, text) pairs as they are (no directory)."""
    if not files:
        raise StackError("no stack file given; name at least one Compose file")
    sources = []
    for item in files:
        if isinstance(item, tuple):
            sources.append(Source(name=item[0], text=item[1]))
            continue
        path = Path(item)
        data = read_bounded(path, "stack file")
        sources.append(Source(name=str(path), text=data, directory=path.resolve().parent))
    for source in sources:
        check_size(source.text, source.name, "stack file")
    return sources


def _mib(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size // 1024} KiB"
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0") + " MiB"


def _too_large(name: str, what: str, size: int, *, at_least: bool = False) -> StackError:
    more = "more than " if at_least else ""
    return StackError(
        f"the {what} is {more}{_mib(size)} ({size} bytes), larger than shoal's limit of"
        f" {_mib(MAX_FILE_BYTES)} ({MAX_FILE_BYTES} bytes); a Compose file is usually a few KB:"
        " check that this is the file you meant",
        file=name,
    )


def check_size(text: str | bytes, name: str, what: str = "stack file") -> None:
    """Refuse text larger than :data:`MAX_FILE_BYTES` (as UTF-8) before any parsing."""
    if isinstance(text, str) and len(text) > MAX_FILE_BYTES // 4:
        size = len(text.encode("utf-8", "surrogatepass"))
    else:
        size = len(text)
    if size > MAX_FILE_BYTES:
        raise _too_large(name, what, size)


def read_bounded(path: Path, what: str) -> bytes:
    """A file's bytes, refused at once (by its size, before reading) when over the limit;
    never more than the limit is read, even from a file that grows or has no size."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise _too_large(str(path), what, size)
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StackError(f"cannot read the {what}: {reason}", file=str(path)) from exc
    if len(data) > MAX_FILE_BYTES:
        raise _too_large(str(path), what, MAX_FILE_BYTES, at_least=True)
    return data


def decode_text(data: str | bytes, filename: str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise StackError(
            f"expected UTF-8 text, found byte 0x{data[exc.start]:02x}",
            file=filename,
            line=line,
            column=column,
        ) from exc


def parse_yaml(text: str | bytes, filename: str) -> Node:
    """Parse one YAML document whose top level must be a mapping."""
    check_size(text, filename)
    source = decode_text(text, filename)
    try:
        loader = yaml.SafeLoader(source)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "malformed YAML"
        start = exc.context_mark
        if exc.context and not exc.context.startswith("while"):
            problem = f"{exc.context} {problem}"
        elif exc.context:
            problem += f" {exc.context}"
            if start is not None and mark is not None and start.line != mark.line:
                problem += f" that starts at line {start.line + 1}, column {start.column + 1}"
        raise StackError(
            f"invalid YAML: {problem}",
            file=filename,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from exc
    except yaml.YAMLError as exc:
        raise StackError(f"invalid YAML: {exc}", file=filename) from exc
    except RecursionError as exc:
        raise StackError("invalid YAML: the document is nested too deeply", file=filename) from exc
    if root is None:
        raise StackError(
            "expected a mapping with a 'services' key, found an empty file", file=filename
        )
    tree = _Builder(filename).build(root, 1, 1, 0)
    if not tree.is_map():
        raise tree.error("", f"expected a mapping at the top level, found {describe(tree)}")
    return tree


class _Builder:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.active: set[int] = set()
        self.built: set[int] = set()
        self.aliased = False
        self.count = 0
        self.constructor = SafeConstructor()

    def error(self, node: yaml.Node, message: str) -> StackError:
        mark = node.start_mark
        return StackError(message, file=self.filename, line=mark.line + 1, column=mark.column + 1)

    def build(self, node: yaml.Node, line: int, column: int, depth: int) -> Node:
        self.count += 1
        if self.count > MAX_VALUES:
            if self.aliased:
                raise self.error(
                    node,
                    f"the file expands to more than {MAX_VALUES} values "
                    "through its aliases (aliases of aliases?)",
                )
            raise self.error(node, f"the file has more than {MAX_VALUES} values")
        if depth > MAX_DEPTH:
            raise self.error(node, f"the document is nested more than {MAX_DEPTH} levels deep")
        tag = _COMPOSE_TAGS.get(node.tag)
        if tag is None and not node.tag.startswith("tag:yaml.org,2002:"):
            raise self.error(node, f"unsupported YAML tag {node.tag!r}")
        if id(node) in self.built:
            self.aliased = True
        self.built.add(id(node))
        if isinstance(node, ScalarNode):
            value, raw = self.scalar(node, tag)
            return Node(value, self.filename, line, column, raw=raw, tag=tag)
        if id(node) in self.active:
            raise self.error(node, "invalid YAML: an alias refers to a node that contains it")
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                items = [self.build(item, *_pos(item), depth + 1) for item in node.value]
                return Node(items, self.filename, line, column, tag=tag)
            assert isinstance(node, MappingNode)
            return Node(self.mapping(node, depth), self.filename, line, column, tag=tag)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: ScalarNode, tag: str | None) -> tuple[Any, str | None]:
        if node.tag == _STR or tag is not None or node.style:
            return node.value, None
        construct = _CONSTRUCTORS.get(node.tag)
        if construct is None:  # timestamps, binary and the like stay text
            return node.value, None
        if node.tag != "tag:yaml.org,2002:null" and _SEXAGESIMAL.match(node.value):
            return node.value, None  # YAML 1.1 reads 22:22 as 1342; Compose means a string
        try:
            return construct(self.constructor, node), node.value
        except ValueError:  # an integer too long for Python to convert stays text
            return node.value, None

    def mapping(self, node: MappingNode, depth: int) -> dict[str, Node]:
        explicit: dict[str, Node] = {}
        merged: dict[str, Node] = {}
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                for source in self.merge_sources(value_node):
                    if id(source) in self.active:
                        raise self.error(
                            source, "invalid YAML: a merge key refers to a mapping that contains it"
                        )
                    self.active.add(id(source))
                    try:
                        for key, value in self.mapping(source, depth + 1).items():
                            merged.setdefault(key, value)
                    finally:
                        self.active.discard(id(source))
                continue
            key = self.key(key_node)
            line, column = _pos(key_node)
            if key in explicit:
                raise self.error(
                    key_node,
                    f"invalid YAML: duplicate key {key!r} (first on line {first_seen[key]})",
                )
            first_seen[key] = line
            explicit[key] = self.build(value_node, line, column, depth + 1)
        for key, value in merged.items():
            explicit.setdefault(key, value)
        return explicit

    def merge_sources(self, node: yaml.Node) -> list[MappingNode]:
        if isinstance(node, MappingNode):
            return [node]
        if isinstance(node, SequenceNode) and all(isinstance(n, MappingNode) for n in node.value):
            return list(node.value)
        raise self.error(
            node,
            "invalid YAML: a merge key '<<' takes a mapping or a list of "
            "mappings (usually an alias like *defaults)",
        )

    def key(self, node: yaml.Node) -> str:
        if not isinstance(node, ScalarNode):
            raise self.error(
                node,
                "invalid YAML: expected a plain key, found a "
                f"{'list' if isinstance(node, SequenceNode) else 'mapping'}",
            )
        if node.tag == "tag:yaml.org,2002:null" and not node.style:
            raise self.error(node, "invalid YAML: expected a key, found null")
        return str(node.value)


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


_VERSION = re.compile(r"^3(\.\d+)?$")


def check_version(root: Node) -> None:
    """Accept version 3.x files and Compose Specification files (no ``version`` key)."""
    version = root.get("version")
    if version is None:
        return
    text = version.raw if version.raw is not None else version.value
    if not isinstance(text, str) or isinstance(version.value, bool):
        raise version.error("version", f'expected a string like "3.8", found {describe(version)}')
    if _VERSION.match(text.strip()):
        return
    if text.strip().startswith(("1", "2")):
        hint = (
            "shoal stack deploy, like docker stack deploy, needs version 3.x or a Compose "
            "Specification file (no 'version' key), with resource limits such as "
            "mem_limit under deploy.resources"
        )
    else:
        hint = "use version 3.x or a Compose Specification file (no 'version' key)"
    raise version.error("version", f"unsupported Compose file version: {text}; {hint}")
