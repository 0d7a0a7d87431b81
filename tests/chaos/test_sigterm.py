"""SIGTERM always ends the daemon within a few seconds, whatever holds its shutdown.

The fault: the embedded broker hangs (SIGSTOP), so the daemon's last publish, its session's
disconnect and the broker's stop all wait on something that never answers."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from agent.daemon import STOP_GRACE
from tests.chaos.report import ChaosReport
from tests.chaos.wal_support import STOP_WITHIN, alive
from tests.harness import new_cluster

pytestmark = [pytest.mark.integration]


def test_sigterm_ends_a_daemon_whose_broker_hangs(
    tmp_path: Path, chaos_report: ChaosReport
) -> None:
    assert STOP_GRACE < STOP_WITHIN
    with new_cluster(tmp_path) as (cluster, _):
        mgr = cluster.manager
        broker = int((mgr / "broker" / "mosquitto.pid").read_text())
        daemon = int((mgr / "shoal.pid").read_text())
        os.kill(broker, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            os.kill(daemon, signal.SIGTERM)
            while alive(daemon) and time.monotonic() - t0 < 30:
                time.sleep(0.02)
            took = time.monotonic() - t0
        finally:
            with contextlib.suppress(ProcessLookupError):  # a clean stop ends the broker
                os.kill(broker, signal.SIGCONT)
        chaos_report.record(
            "broker hangs, then SIGTERM", injected=1, converge_s=took, note="daemon gone"
        )
        assert took < STOP_WITHIN, f"the daemon took {took:.1f} s to end after SIGTERM"
        # a shutdown that could not finish says so before the process ends
        log = (mgr / "shoal.log").read_text()
        assert "exiting now" in log or "stopped" in log.splitlines()[-1]
