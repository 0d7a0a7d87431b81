"""A tiny throughput bench of DiskStorage.save with fsync; it prints, it asserts no timing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.manager.raft import Entry, HardState
from agent.manager.wal import DiskStorage

from .helpers import KEY


@pytest.mark.parametrize(("per_save", "size"), [(1, 100), (64, 100), (64, 1024)])
def test_save_throughput_with_fsync(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], per_save: int, size: int
) -> None:
    saves = 300 if per_save == 1 else 60
    data = bytes(size)
    with DiskStorage(tmp_path, KEY) as st:
        start = time.perf_counter()
        index = 0
        for _ in range(saves):
            ents = [Entry(1, index + i + 1, data=data) for i in range(per_save)]
            index += per_save
            st.save(HardState(1, "a", index), ents)
        elapsed = time.perf_counter() - start
        assert st.last_index() == saves * per_save
    with capsys.disabled():
        print(
            f"\n  wal bench: {per_save:>3} x {size} B entries per save: "
            f"{saves * per_save / elapsed:,.0f} entries/s, {saves / elapsed:,.0f} fsyncs/s"
        )
