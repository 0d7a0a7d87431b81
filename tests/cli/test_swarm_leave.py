"""What `swarm leave` on a manager says without --force."""

from __future__ import annotations

from agent.cli.swarm import leave_refusal


def test_the_last_manager_is_warned_that_leaving_erases_the_swarm() -> None:
    msg = leave_refusal((1, 0))
    assert "Removing the last manager erases all current state of the swarm." in msg
    assert "leaves" not in msg


def test_one_of_three_healthy_managers_is_not_told_it_is_the_last() -> None:
    msg = leave_refusal((3, 0))
    assert "erases all current state" not in msg
    assert "Without a Raft quorum" not in msg
    assert msg.endswith("`--force-new-cluster`. Use `--force` to suppress this message.")


def test_leaving_when_it_loses_quorum_says_how_many_managers_are_left() -> None:
    msg = leave_refusal((2, 1))
    assert "Removing this node leaves 1 managers out of 3." in msg
    assert "Without a Raft quorum your swarm will be inaccessible." in msg
    assert "erases all current state" not in msg
