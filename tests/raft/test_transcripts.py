"""Transcript tests: each testdata/*.txt is a script of commands, each followed by the exact
output it produced. Run with --rewrite to regenerate the outputs, then review the diff.

Format: a command line, a line `----`, the output lines, then a blank line. Lines starting
with `#` outside a block are comments.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .interaction import InteractionEnv

TESTDATA = Path(__file__).parent / "testdata"


def parse(text: str) -> list[tuple[str, str, str]]:
    """Items of ("comment", text, "") and ("cmd", command, expected output)."""
    items: list[tuple[str, str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            items.append(("comment", line, ""))
            i += 1
        else:
            if i + 1 >= len(lines) or lines[i + 1] != "----":
                raise ValueError(f"line {i + 1}: expected '----' after the command {line!r}")
            j = i + 2
            while j < len(lines) and lines[j].strip():
                j += 1
            items.append(("cmd", line, "\n".join(lines[i + 2 : j])))
            i = j
    return items


def render(items: list[tuple[str, str, str]]) -> str:
    out: list[str] = []
    for kind, text, output in items:
        if kind == "comment":
            if out and not out[-1].startswith("#"):
                out.append("")
            out.append(text)
        else:
            if out and not out[-1].startswith("#"):
                out.append("")
            out.extend([text, "----", output])
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("*.txt")), ids=lambda p: p.stem)
def test_transcript(path: Path, request: pytest.FixtureRequest) -> None:
    rewrite = request.config.getoption("--rewrite", default=False)
    items = parse(path.read_text())
    env = InteractionEnv()
    actual_items = []
    for kind, text, expected in items:
        if kind == "comment":
            actual_items.append((kind, text, expected))
            continue
        actual = env.run(text)
        actual_items.append((kind, text, actual))
        if not rewrite:
            assert actual == expected, (
                f"{path.name}: output of {text!r} differs (rerun with --rewrite and review "
                f"the diff)\n--- expected\n{expected}\n--- actual\n{actual}"
            )
    if rewrite:
        path.write_text(render(actual_items))
