"""The single manager's cluster state: tokens, nodes, revocation, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import ShoalError
from agent.manager.state import ClusterState
from certs import JoinToken

DIGEST = "ab" * 32


def _state() -> ClusterState:
    return ClusterState(
        cluster_id="c1",
        worker_token=str(JoinToken.new(DIGEST)),
        manager_token=str(JoinToken.new(DIGEST)),
    )


def test_tokens_grant_their_role_and_rotation_invalidates_the_old_one() -> None:
    s = _state()
    old = JoinToken.parse(s.worker_token)
    assert s.role_for_token(old) == "worker"
    assert s.role_for_token(JoinToken.parse(s.manager_token)) == "manager"
    s.rotate_token("worker", DIGEST)
    assert s.role_for_token(old) is None
    assert s.role_for_token(JoinToken.parse(s.worker_token)) == "worker"


def test_removing_a_node_revokes_every_certificate_it_held() -> None:
    s = _state()
    rec = s.add_node("n1", "worker", "h1", 11)
    rec.serials.append(12)
    s.remove_node("n1")
    assert sorted(serial for serial, _ in s.revoked_list()) == [11, 12]
    assert "n1" not in s.nodes


def test_nodes_are_found_by_id_prefix_or_hostname() -> None:
    s = _state()
    s.add_node("abc1", "worker", "pi-1", 1)
    s.add_node("abd2", "worker", "pi-2", 2)
    assert s.find_node("abc").id == "abc1"
    assert s.find_node("pi-2").id == "abd2"
    with pytest.raises(ShoalError, match="ambiguous"):
        s.find_node("ab")
    with pytest.raises(ShoalError, match="not found"):
        s.find_node("zz")


def test_state_survives_a_save_and_load(tmp_path: Path) -> None:
    s = _state()
    s.add_node("n1", "manager", "h1", 5)
    s.revoke(99)
    s.save(tmp_path / "state.json")
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600
    t = ClusterState.load(tmp_path / "state.json")
    assert t == s


def test_a_corrupt_state_file_is_reported_not_used(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(ShoalError, match="corrupt"):
        ClusterState.load(tmp_path / "state.json")
