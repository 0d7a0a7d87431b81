"""What a node says it uses (mon/node/<id>/usage): /proc parsing on sample text, the deltas,
and when a sample is worth publishing. No /proc, broker or engine."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from agent.worker.usage import (
    REFRESH_EVERY,
    CpuTimes,
    TaskCounters,
    UsageSampler,
    cpu_fraction,
    docker_counters,
    parse_meminfo,
    parse_pid_stat,
    parse_proc_stat,
    parse_status_rss,
    worth_publishing,
)
from agent.worker.usage_report import UsageReporter
from broker.topics import Topics

PROC_STAT = """cpu  2927068 5602 489472 7566732 19262 0 13665 59334 0 0
cpu0 1337677 2475 234839 3926666 5902 0 2310 29656 0 0
intr 1 2 3
"""

MEMINFO = """MemTotal:        4027812 kB
MemFree:          212044 kB
MemAvailable:    3231900 kB
Buffers:          123456 kB
"""

PID_STAT = (
    "4242 (sleep (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 "
    "123456 2453504 180 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
)

PID_STATUS = """Name:\tsleep
State:\tS (sleeping)
VmPeak:\t    2400 kB
VmRSS:\t     720 kB
Threads:\t1
"""


def test_proc_stat_counts_idle_and_iowait_as_not_busy() -> None:
    t = parse_proc_stat(PROC_STAT)
    assert t is not None
    total = 2927068 + 5602 + 489472 + 7566732 + 19262 + 0 + 13665 + 59334
    assert t.total == total
    assert t.busy == total - 7566732 - 19262


def test_proc_stat_without_a_cpu_line_or_with_junk_gives_nothing() -> None:
    assert parse_proc_stat("intr 1 2\n") is None
    assert parse_proc_stat("cpu  1 2 x 4\n") is None
    assert parse_proc_stat("cpu  1 2\n") is None


def test_cpu_fraction_is_the_busy_share_between_two_samples() -> None:
    assert cpu_fraction(CpuTimes(100, 1000), CpuTimes(150, 1200)) == 0.25
    assert cpu_fraction(None, CpuTimes(1, 2)) is None
    assert cpu_fraction(CpuTimes(1, 2), CpuTimes(1, 2)) is None  # no time passed


def test_memory_used_is_total_less_available() -> None:
    assert parse_meminfo(MEMINFO) == ((4027812 - 3231900) * 1024, 4027812 * 1024)


def test_memory_falls_back_to_free_on_old_kernels_and_needs_a_total() -> None:
    assert parse_meminfo("MemTotal: 100 kB\nMemFree: 40 kB\n") == (60 * 1024, 100 * 1024)
    assert parse_meminfo("MemFree: 40 kB\n") is None


def test_process_cpu_is_user_plus_system_ticks_even_with_parens_in_its_name() -> None:
    assert parse_pid_stat(PID_STAT, 100) == 3.0
    assert parse_pid_stat("4242 (x) S 1", 100) is None
    assert parse_pid_stat("garbage", 100) is None


def test_process_memory_is_its_resident_set() -> None:
    assert parse_status_rss(PID_STATUS) == 720 * 1024
    assert parse_status_rss("Name:\tkthreadd\n") is None


def test_container_memory_leaves_out_the_page_cache_like_docker_stats() -> None:
    stats = {
        "cpu_stats": {"cpu_usage": {"total_usage": 2_500_000_000}},
        "memory_stats": {"usage": 50_000_000, "stats": {"inactive_file": 8_000_000}},
    }
    assert docker_counters(stats) == TaskCounters(cpu_seconds=2.5, memory=42_000_000)
    assert docker_counters({"cpu_stats": {}}) is None
    assert docker_counters("nope") is None


def _sampler_doc(
    sampler: UsageSampler, now: float, busy: int, total: int, task_cpu: float
) -> dict[str, Any]:
    line = f"cpu  {busy} 0 0 {total - busy} 0 0 0 0 0 0\n"
    return sampler.sample(
        now=now,
        proc_stat=line,
        meminfo=MEMINFO,
        load1=0.4,
        disk=(10, 100),
        tasks={"t1": TaskCounters(task_cpu, 12_000_000)},
    )


def test_sampler_gives_node_and_task_cpu_as_fractions_of_the_whole_node() -> None:
    s = UsageSampler(cpus=4)
    first = _sampler_doc(s, 1000.0, 100, 1000, 10.0)
    assert first["cpu"] is None and first["tasks"]["t1"]["cpu"] is None  # no delta yet
    doc = _sampler_doc(s, 1030.0, 400, 2000, 22.0)
    assert doc["cpu"] == 0.3
    assert doc["tasks"] == {"t1": {"cpu": 0.1, "memory": 12_000_000}}  # 12 s of 4 x 30 s
    assert doc["memory_total"] == 4027812 * 1024
    assert (doc["disk_used"], doc["disk_total"], doc["load1"], doc["time"]) == (
        10,
        100,
        0.4,
        1030.0,
    )


def _doc(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cpu": 0.1,
        "load1": 0.4,
        "memory_used": 800,
        "memory_total": 1000,
        "disk_used": 50,
        "disk_total": 100,
        "tasks": {"t1": {"cpu": 0.01, "memory": 100}},
        "time": 1000.0,
    }
    base.update(kw)
    return base


def test_the_first_sample_is_published_then_only_changes_beyond_the_thresholds() -> None:
    last = _doc()
    assert worth_publishing(None, _doc(), 1000.0)
    assert not worth_publishing(last, _doc(cpu=0.14, memory_used=810, time=1030.0), 1030.0)
    assert worth_publishing(last, _doc(cpu=0.2, time=1030.0), 1030.0)
    assert worth_publishing(last, _doc(memory_used=850, time=1030.0), 1030.0)
    assert not worth_publishing(last, _doc(load1=1.0, time=1030.0), 1030.0)
    assert worth_publishing(last, _doc(load1=1.5, time=1030.0), 1030.0)
    assert worth_publishing(last, _doc(tasks={}, time=1030.0), 1030.0)
    busy_task = {"t1": {"cpu": 0.5, "memory": 100}}
    assert worth_publishing(last, _doc(tasks=busy_task, time=1030.0), 1030.0)


def test_an_idle_node_is_published_again_every_ten_minutes() -> None:
    last = _doc()
    assert not worth_publishing(last, _doc(), 1000.0 + REFRESH_EVERY - 1)
    assert worth_publishing(last, _doc(), 1000.0 + REFRESH_EVERY)


class _Session:
    connected = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bool]] = []

    def on_connect(self, cb: Any) -> None:
        self.reconnected = cb

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.sent.append((topic, payload, retain))


class _Driver:
    name = "process"

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    async def usage(self, refs: list[Any]) -> dict[str, TaskCounters]:
        self.asked.append([r.task_id for r in refs])
        return {r.task_id: TaskCounters(1.0, 5) for r in refs}


class _Ref:
    task_id = "t9"


def test_reporter_publishes_retained_on_the_nodes_usage_topic_and_skips_an_idle_repeat(
    tmp_path: Path,
) -> None:
    session, driver = _Session(), _Driver()
    now = [1000.0]
    reporter = UsageReporter(
        session=session,  # type: ignore[arg-type]
        topics=Topics("c1"),
        node_id="n1",
        driver=driver,  # type: ignore[arg-type]
        running=lambda: [_Ref()],  # type: ignore[list-item]
        interval=30,
        disk_path=tmp_path / "not-yet",
        clock=lambda: now[0],
    )

    async def go() -> list[bool]:
        out = [await reporter.tick()]
        now[0] += 30
        out.append(await reporter.tick())
        await session.reconnected()
        now[0] += 30
        out.append(await reporter.tick())
        return out

    published = asyncio.run(go())
    assert published[0] and published[2]  # the first, and the first after a reconnect
    topic, payload, retain = session.sent[0]
    assert (topic, retain) == ("shoal/c1/mon/node/n1/usage", True)
    doc = json.loads(payload)
    assert doc["tasks"] == {"t9": {"cpu": None, "memory": 5}}
    assert doc["disk_total"] > 0 and doc["memory_total"] > 0  # of tmp_path's filesystem
    assert driver.asked[0] == ["t9"]
