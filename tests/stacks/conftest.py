from __future__ import annotations

from pathlib import Path

import pytest

from tests.stacks.paths import INVALID, VALID


@pytest.fixture
def in_valid(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the valid corpus folder, so file names in messages are as a user typed them."""
    monkeypatch.chdir(VALID)
    return VALID


@pytest.fixture
def in_invalid(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(INVALID)
    return INVALID
