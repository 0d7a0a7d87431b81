"""Whatever bytes arrive as a stack file, loading fails only with StackError."""

from __future__ import annotations

import random
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stacks import StackError, StackSpec, load_stack
from tests.stacks.paths import VALID

ENVIRON = {"EDGE_API_KEY": "k", "SHOAL_OVERRIDDEN": "o", "HOME": "/home/shoal"}
CORPUS = {p.name: p.read_text() for p in sorted(VALID.glob("*.yml"))}

# Keys real stack files use, so generated documents reach deep into the schema.
KEYS = [
    "services",
    "networks",
    "volumes",
    "secrets",
    "configs",
    "version",
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "labels",
    "deploy",
    "ports",
    "target",
    "published",
    "protocol",
    "mode",
    "replicas",
    "placement",
    "constraints",
    "preferences",
    "spread",
    "resources",
    "limits",
    "reservations",
    "cpus",
    "memory",
    "restart_policy",
    "condition",
    "delay",
    "update_config",
    "rollback_config",
    "healthcheck",
    "test",
    "disable",
    "type",
    "source",
    "read_only",
    "external",
    "name",
    "file",
    "aliases",
    "devices",
    "ulimits",
    "soft",
    "hard",
    "extra_hosts",
    "logging",
    "driver",
    "options",
    "tmpfs",
    "size",
    "bind",
    "propagation",
    "x-ext",
    "<<",
    "web",
    "db",
    "default",
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(
        [
            "",
            "80",
            "8080:80",
            "10s",
            "512M",
            "0.5",
            "global",
            "/data",
            "data:/data:ro",
            "node.role==manager",
            "${X:-1}",
            "$",
            "${Y:?e}",
            "CMD",
            "ingress",
            "true",
            "3.8",
            "2",
            "~",
            "a=b",
        ]
    )
    | st.text(max_size=12)
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=40,
)


def load_text(text: str | bytes) -> StackSpec | None:
    try:
        return load_stack([("fuzz.yml", text)], stack_name="fuzz", environ=ENVIRON, base_dir=VALID)
    except StackError as exc:
        assert str(exc)
        for error in exc.errors:
            assert error.message
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_arbitrary_yaml_documents(document: Any) -> None:
    load_text(yaml.safe_dump(document))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["web", "db", "x"]), DOCUMENTS, max_size=3))
def test_arbitrary_services(services: Any) -> None:
    load_text(yaml.safe_dump({"services": services}))


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += _paths(value, (*prefix, index))
    return found


def _mutate(tree: Any, rng: random.Random, replacement: Any, new_key: str) -> Any:
    path = rng.choice(_paths(tree))
    if not path:
        return replacement
    parent = tree
    for step in path[:-1]:
        parent = parent[step]
    action = rng.choice(["delete", "replace", "insert"])
    if action == "delete":
        del parent[path[-1]]
    elif action == "replace":
        parent[path[-1]] = replacement
    elif isinstance(parent, dict):
        parent[new_key] = replacement
    else:
        parent.insert(path[-1], replacement)
    return tree


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(CORPUS)),
    st.randoms(use_true_random=False),
    st.lists(st.tuples(DOCUMENTS, st.sampled_from(KEYS)), min_size=1, max_size=4),
)
def test_mutated_corpus_files(
    name: str, rng: random.Random, mutations: list[tuple[Any, str]]
) -> None:
    tree = yaml.safe_load(CORPUS[name])
    for replacement, key in mutations:
        tree = _mutate(tree, rng, replacement, key)
    load_text(yaml.safe_dump(tree))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(CORPUS)), st.data())
def test_truncated_and_corrupted_corpus_files(name: str, data: st.DataObject) -> None:
    raw = CORPUS[name].encode()
    cut = data.draw(st.integers(0, len(raw)))
    load_text(raw[:cut])
    position = data.draw(st.integers(0, len(raw)))
    noise = data.draw(st.binary(min_size=1, max_size=8))
    load_text(raw[:position] + noise + raw[position:])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    load_text(data)


def test_corpus_files_load_as_text_with_their_directory() -> None:
    for text in CORPUS.values():
        assert load_text(text) is not None


OVERRIDE = [(p.name, p.read_text()) for p in sorted((VALID / "override").glob("*.yml"))]


class _TaggedLoader(yaml.SafeLoader):
    """Reads Compose's !reset and !override tags as plain values, for mutating files."""


def _untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_TaggedLoader.add_multi_constructor("!", _untagged)


def _tag_somewhere(text: str, rng: random.Random) -> str:
    """Put Compose's !reset or !override before a random block value."""
    spots = [
        i for i in range(len(text) - 1) if text.startswith(":\n", i) or text.startswith(": ", i)
    ]
    if not spots:
        return text
    spot = rng.choice(spots)
    tag = rng.choice([" !reset", " !override"])
    return text[: spot + 1] + tag + text[spot + 1 :]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.randoms(use_true_random=False),
    st.lists(st.tuples(DOCUMENTS, st.sampled_from(KEYS)), max_size=3),
    st.integers(0, 2),
)
def test_mutated_multi_file_merges(
    rng: random.Random, mutations: list[tuple[Any, str]], tags: int
) -> None:
    texts = []
    for index, (name, text) in enumerate(OVERRIDE):
        tree = yaml.load(text, Loader=_TaggedLoader)
        for replacement, key in mutations[index::2]:
            tree = _mutate(tree, rng, replacement, key)
        dumped = yaml.safe_dump(tree)
        for _ in range(tags):
            dumped = _tag_somewhere(dumped, rng)
        texts.append((name, dumped))
    try:
        load_stack(texts, stack_name="fuzz", environ=ENVIRON, base_dir=VALID / "override")
    except StackError as exc:
        assert all(error.message for error in exc.errors)
