"""The record a removed node keeps of its removal, and what it says about it."""

from __future__ import annotations

from pathlib import Path

from agent.removal import Removal, load_removal, save_removal


def test_the_record_says_what_the_node_did() -> None:
    text = Removal(
        "2026-01-02T03:04:05+00:00", "its certificate is revoked", ("t1", "t2")
    ).describe()
    assert text.startswith("this node was removed from the swarm (its certificate is revoked)")
    assert "stopped and removed 2 tasks" in text and "did not stop" not in text
    assert "run `shoal swarm leave`" in text
    one = Removal("2026-01-02T03:04:05+00:00", "r", ("t1",), left_running=("t9",)).describe()
    assert "stopped and removed 1 task;" in one
    assert "1 task did not stop in time (t9) and will be stopped when the node next starts" in one


def test_the_record_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "removed.json"
    assert load_removal(path) is None
    removal = Removal("2026-01-02T03:04:05+00:00", "revoked", ("a", "b"), ("c",))
    save_removal(path, removal)
    assert load_removal(path) == removal


def test_an_unreadable_record_is_ignored_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "removed.json"
    for junk in ("{not json", '["a list"]', '{"at": "x"}'):
        path.write_text(junk)
        assert load_removal(path) is None
