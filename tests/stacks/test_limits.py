"""Stack files too large to be Compose files are refused at once, by name, size and limit;
a small file cannot expand without bound through its aliases."""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from stacks import StackError, load_stack, load_stack_text
from stacks.loader import MAX_FILE_BYTES, MAX_VALUES, parse_yaml

_SERVICE = (
    "  web{i}:\n    image: nginx:1.25\n    environment:\n      MODE: prod\n"
    "    deploy:\n      replicas: 2\n    ports:\n      - '{port}:80'\n"
)


_SHOAL = [sys.executable, "-m", "agent.cli"]


def _compose(size: int) -> str:
    """A plausible Compose file of about `size` bytes (many services)."""
    parts, total, i = ["services:\n"], 10, 0
    while total < size:
        part = _SERVICE.format(i=i, port=8000 + i % 1000)
        parts.append(part)
        total += len(part)
        i += 1
    return "".join(parts)


def test_a_huge_stack_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.yml"
    with big.open("wb") as f:
        f.truncate(56 * 1024 * 1024)  # sparse: 56 MiB that cost nothing to make
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(StackError) as caught:
            load_stack([big], stack_name="app", environ={})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 1.0
    assert peak < 2 * 1024 * 1024  # not read into memory
    message = str(caught.value)
    assert message.startswith(f"{big}: the stack file is 56 MiB ({56 * 1024 * 1024} bytes)")
    assert f"limit of 1 MiB ({MAX_FILE_BYTES} bytes)" in message


def test_a_file_without_a_size_is_read_no_further_than_the_limit() -> None:
    started = time.monotonic()
    with pytest.raises(StackError) as caught:
        load_stack([Path("/dev/zero")], stack_name="app", environ={})
    assert time.monotonic() - started < 1.0
    assert "/dev/zero: the stack file is more than 1 MiB" in str(caught.value)


def test_a_stack_sent_as_text_over_the_limit_is_refused_by_name_and_size() -> None:
    text = _compose(MAX_FILE_BYTES + 1).encode()
    started = time.monotonic()
    with pytest.raises(StackError) as caught:
        load_stack_text(text, stack_name="web", filename="web.yml")
    assert time.monotonic() - started < 0.5
    assert str(caught.value).startswith(f"web.yml: the stack file is 1 MiB ({len(text)} bytes)")
    assert "larger than shoal's limit of 1 MiB" in str(caught.value)


def test_a_file_just_under_the_limit_is_not_refused_for_its_size(tmp_path: Path) -> None:
    ok = tmp_path / "ok.yml"
    padding = "# " + "x" * 97 + "\n"
    body = "services:\n  web:\n    image: nginx:1.25\n"
    ok.write_text(padding * ((MAX_FILE_BYTES - len(body)) // len(padding)) + body)
    assert ok.stat().st_size <= MAX_FILE_BYTES
    spec = load_stack([ok], stack_name="app", environ={})
    assert [s.name for s in spec.services] == ["app_web"]


def test_a_small_file_cannot_expand_through_aliases() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):  # 10**9 values if expanded
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    text = "\n".join(lines) + "\n"
    assert len(text) < 1024
    started = time.monotonic()
    with pytest.raises(StackError) as caught:
        parse_yaml(text, "bomb.yml")
    assert time.monotonic() - started < 5.0
    assert f"expands to more than {MAX_VALUES} values through its aliases" in str(caught.value)


def test_a_file_with_too_many_values_and_no_aliases_says_so() -> None:
    text = "a: [" + "x," * MAX_VALUES + "x]\n"
    with pytest.raises(StackError) as caught:
        parse_yaml(text, "flat.yml")
    assert f"the file has more than {MAX_VALUES} values" in str(caught.value)
    assert "aliases" not in str(caught.value)


def test_the_cli_refuses_a_huge_stack_file_at_once(tmp_path: Path) -> None:
    big = tmp_path / "huge.yml"
    big.write_text(_compose(3 * MAX_FILE_BYTES))
    started = time.monotonic()
    proc = subprocess.run(
        [*_SHOAL, "--data-dir", str(tmp_path / "d"), "stack", "deploy", "-c", str(big), "app"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    took = time.monotonic() - started
    assert proc.returncode == 1
    size = big.stat().st_size
    assert f"Error: {big}: the stack file is 3 MiB ({size} bytes)" in proc.stderr, proc.stderr
    assert "limit of 1 MiB" in proc.stderr and "aliases" not in proc.stderr
    assert took < 10.0  # the interpreter's start, not the file


def test_files_a_stack_names_are_read_no_further_than_the_limit(tmp_path: Path) -> None:
    stack = tmp_path / "stack.yml"
    stack.write_text("services:\n  web:\n    image: x\n    env_file: zero.env\n")
    (tmp_path / "zero.env").symlink_to("/dev/zero")
    started = time.monotonic()
    with pytest.raises(StackError) as caught:
        load_stack([stack], stack_name="app", environ={})
    assert time.monotonic() - started < 1.0
    assert "env_file 'zero.env' is larger than shoal's limit of 1 MiB" in str(caught.value)


def test_a_huge_dot_env_is_refused_by_name_and_size(tmp_path: Path) -> None:
    stack = tmp_path / "stack.yml"
    stack.write_text("services:\n  web:\n    image: x\n")
    with (tmp_path / ".env").open("wb") as f:
        f.truncate(8 * 1024 * 1024)
    with pytest.raises(StackError) as caught:
        load_stack([stack], stack_name="app", environ={})
    assert str(caught.value).startswith(f"{tmp_path / '.env'}: the .env file is 8 MiB")
