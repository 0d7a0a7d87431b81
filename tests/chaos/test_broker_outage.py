"""A broker outage is not node loss: while the broker is frozen or restarted, every node
keeps its tasks, and afterwards the managers give the nodes time to report back instead of
replacing their tasks. Each test freezes the embedded mosquitto (SIGSTOP: connections stay
open, nothing is answered) under a stream of writes through the manager, then lets it go on
(SIGCONT) or kills it so that the manager's supervisor starts a new one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.outage_support import (
    HEARTBEAT,
    node_dies_in_the_outage,
    node_gone_past_grace,
    outage,
)
from tests.chaos.report import ChaosReport
from tests.harness import Cluster, new_cluster

pytestmark = [pytest.mark.integration]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with new_cluster(tmp_path, "--heartbeat", HEARTBEAT) as (c, _):
        yield c


def test_a_frozen_broker_replaces_no_task(cluster: Cluster, chaos_report: ChaosReport) -> None:
    outage(cluster, chaos_report, seconds=8, kill=False, fault="broker SIGSTOP 8 s")


def test_a_killed_broker_replaces_no_task(cluster: Cluster, chaos_report: ChaosReport) -> None:
    outage(cluster, chaos_report, seconds=8, kill=True, fault="broker SIGSTOP 8 s, SIGKILL")


def test_a_node_that_does_not_report_back_in_the_grace_period_loses_its_tasks(
    cluster: Cluster, chaos_report: ChaosReport
) -> None:
    node_gone_past_grace(
        cluster, chaos_report, grace=15, fault="broker SIGSTOP 8 s, a node never back"
    )


def test_a_node_that_dies_while_the_broker_restarts_loses_its_tasks(
    cluster: Cluster, chaos_report: ChaosReport
) -> None:
    node_dies_in_the_outage(
        cluster, chaos_report, grace=5, fault="broker SIGSTOP 8 s, SIGKILL; a node dies meanwhile"
    )


@pytest.mark.slow
def test_a_broker_frozen_for_30_s_replaces_no_task(
    cluster: Cluster, chaos_report: ChaosReport
) -> None:
    outage(cluster, chaos_report, seconds=30, kill=False, fault="broker SIGSTOP 30 s")


@pytest.mark.slow
def test_a_broker_frozen_30_s_then_killed_replaces_no_task(
    cluster: Cluster, chaos_report: ChaosReport
) -> None:
    outage(cluster, chaos_report, seconds=30, kill=True, fault="broker SIGSTOP 30 s, SIGKILL")
