"""The manager's data key at rest: plain without autolock, wrapped with the unlock key with it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from agent.manager.keys import DataKeyError, DataKeyFile, LockedError
from agent.model.errors import ShoalError
from certs import new_unlock_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_without_autolock_the_key_is_stored_plain_in_a_private_file(tmp_path: Path) -> None:
    keyfile = DataKeyFile(tmp_path / "data-key")
    data_key = keyfile.create(None)
    assert len(data_key) == 32
    assert mode(keyfile.path) == 0o600
    assert not keyfile.is_locked()
    assert keyfile.load() == data_key
    assert DataKeyFile(tmp_path / "data-key").load() == data_key


def test_with_autolock_the_key_is_wrapped_and_never_stored_in_the_clear(tmp_path: Path) -> None:
    unlock = new_unlock_key()
    keyfile = DataKeyFile(tmp_path / "data-key")
    data_key = keyfile.create(unlock)
    assert keyfile.is_locked()
    assert mode(keyfile.path) == 0o600
    text = keyfile.path.read_text()
    assert json.loads(text)["locked"] is True
    assert data_key.hex() not in text and unlock not in text
    assert keyfile.load(unlock) == data_key


def test_a_locked_key_without_the_unlock_key_raises_locked(tmp_path: Path) -> None:
    keyfile = DataKeyFile(tmp_path / "data-key")
    keyfile.create(new_unlock_key())
    with pytest.raises(LockedError, match=r"locked.*unlock key") as info:
        keyfile.load()
    assert isinstance(info.value, ShoalError)


def test_a_wrong_unlock_key_is_a_clear_error(tmp_path: Path) -> None:
    keyfile = DataKeyFile(tmp_path / "data-key")
    keyfile.create(new_unlock_key())
    with pytest.raises(DataKeyError, match="unlock key is wrong") as info:
        keyfile.load(new_unlock_key())
    assert not isinstance(info.value, LockedError)
    with pytest.raises(DataKeyError, match="must start with"):
        keyfile.load("not-a-key")


def test_rewrap_turns_autolock_on_and_off_and_rotates_the_unlock_key(tmp_path: Path) -> None:
    keyfile = DataKeyFile(tmp_path / "data-key")
    data_key = keyfile.create(None)
    first, second = new_unlock_key(), new_unlock_key()

    keyfile.rewrap(None, first)  # swarm update --autolock=true
    assert keyfile.is_locked() and keyfile.load(first) == data_key

    keyfile.rewrap(first, second)  # swarm unlock-key --rotate
    assert keyfile.load(second) == data_key
    with pytest.raises(DataKeyError, match="unlock key is wrong"):
        keyfile.load(first)

    keyfile.rewrap(second, None)  # swarm update --autolock=false
    assert not keyfile.is_locked() and keyfile.load() == data_key
    assert mode(keyfile.path) == 0o600


def test_rewrap_with_a_wrong_unlock_key_changes_nothing(tmp_path: Path) -> None:
    keyfile = DataKeyFile(tmp_path / "data-key")
    unlock = new_unlock_key()
    data_key = keyfile.create(unlock)
    before = keyfile.path.read_bytes()
    with pytest.raises(DataKeyError, match="unlock key is wrong"):
        keyfile.rewrap(new_unlock_key(), None)
    with pytest.raises(LockedError):
        keyfile.rewrap(None, None)
    assert keyfile.path.read_bytes() == before
    assert keyfile.load(unlock) == data_key


def test_create_never_replaces_an_existing_key(tmp_path: Path) -> None:
    keyfile = DataKeyFile(tmp_path / "data-key")
    data_key = keyfile.create(None)
    with pytest.raises(DataKeyError, match="already holds a data key"):
        keyfile.create(None)
    assert keyfile.load() == data_key


def test_a_missing_or_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    keyfile = DataKeyFile(tmp_path / "data-key")
    with pytest.raises(DataKeyError, match="is missing"):
        keyfile.load()
    for damage in (b"", b"{", b"[]", b'{"version": 2}', b'{"version": 1, "locked": false}',
                   b'{"version": 1, "locked": false, "key": "c2hvcnQ="}',
                   b'{"version": 1, "locked": "yes"}'):  # fmt: skip
        keyfile.path.write_bytes(damage)
        with pytest.raises(DataKeyError, match="data-key"):
            keyfile.load()


def test_a_damaged_wrapped_key_is_not_mistaken_for_a_wrong_unlock_key(tmp_path: Path) -> None:
    keyfile = DataKeyFile(tmp_path / "data-key")
    unlock = new_unlock_key()
    keyfile.create(unlock)
    obj = json.loads(keyfile.path.read_text())
    obj["wrapped"] = obj["wrapped"][:-8] + "AAAAAAA="
    keyfile.path.write_text(json.dumps(obj))
    with pytest.raises(DataKeyError, match="corrupt"):
        keyfile.load(unlock)


def test_a_key_file_in_a_missing_directory_cannot_be_created(tmp_path: Path) -> None:
    with pytest.raises(DataKeyError, match="cannot write"):
        DataKeyFile(tmp_path / "nowhere" / "data-key").create(None)
