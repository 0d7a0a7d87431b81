"""The manager has one error root: everything it raises is a ShoalError, so one ``except
ShoalError`` answers a user with the message, and a write that failed is WRITE_ERRORS."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import agent.manager
from agent.manager.raft import NotLeader, RaftError
from agent.manager.raftdriver import ManagerHalted
from agent.manager.store import WRITE_ERRORS, AlreadyApplied, StoreError
from agent.manager.wal.errors import StorageLost
from agent.model.errors import ShoalError


def _exceptions_of_the_manager() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(agent.manager.__path__, "agent.manager."):
        module = importlib.import_module(info.name)
        found += [
            c
            for c in vars(module).values()
            if inspect.isclass(c) and issubclass(c, BaseException) and c.__module__ == info.name
        ]
    return found


def test_every_exception_the_manager_defines_is_a_shoal_error() -> None:
    found = _exceptions_of_the_manager()
    assert len(found) > 15, "the walk found too few exception classes to mean anything"
    assert [c.__qualname__ for c in found if not issubclass(c, ShoalError)] == []


@pytest.mark.parametrize(
    "exc", [RaftError("x"), NotLeader(None), StoreError("x"), AlreadyApplied("x"), TimeoutError()]
)
def test_a_write_that_did_not_go_through_is_one_of_write_errors(exc: Exception) -> None:
    with pytest.raises(WRITE_ERRORS):
        raise exc


def test_the_halting_errors_are_raft_errors_and_shoal_errors() -> None:
    assert issubclass(ManagerHalted, RaftError) and issubclass(ManagerHalted, ShoalError)
    assert issubclass(StorageLost, RaftError)
