"""What a node uses, for ``mon/node/<id>/usage``: pure parsing of /proc text and the rules
for when a new sample is worth publishing. No I/O here; node.py reads the files and the
driver's counters and hands them in.

    cpu          fraction of the whole node (all cores) busy since the last sample,
                 from /proc/stat's first line
    load1        the 1-minute load average
    memory_*     from /proc/meminfo: used = MemTotal - MemAvailable
    disk_*       of the filesystem holding the node's data dir
    tasks        per running task: its cpu fraction of the node since the last sample and
                 its memory (resident) in bytes
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CpuTimes",
    "TaskCounters",
    "UsageSampler",
    "cpu_fraction",
    "docker_counters",
    "parse_meminfo",
    "parse_pid_stat",
    "parse_proc_stat",
    "parse_status_rss",
    "worth_publishing",
]

# a value must move by this much (fraction of the node, or of its memory/disk) to publish
CPU_THRESHOLD = 0.05
BYTES_THRESHOLD = 0.02
LOAD_THRESHOLD = 1.0  # load1 wanders with anything else the host runs; CPU says more
# published anyway this often, so a reader knows the node is alive and the numbers current
REFRESH_EVERY = 600.0


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Cumulative jiffies of the whole machine: busy (everything but idle and iowait), total."""

    busy: int
    total: int


@dataclass(frozen=True, slots=True)
class TaskCounters:
    """One task as its driver sees it: CPU seconds used since it started, resident bytes."""

    cpu_seconds: float
    memory: int


def parse_proc_stat(text: str) -> CpuTimes | None:
    """The aggregate ``cpu`` line of /proc/stat; None when it is missing or malformed."""
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] != "cpu":
            continue
        try:
            values = [int(v) for v in parts[1:]]
        except ValueError:
            return None
        if len(values) < 4:
            return None
        # user nice system idle iowait irq softirq steal guest guest_nice: guest time is
        # already counted in user and nice
        values = values[:8]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        total = sum(values)
        return CpuTimes(busy=total - idle, total=total)
    return None


def cpu_fraction(prev: CpuTimes | None, cur: CpuTimes | None) -> float | None:
    """The busy fraction between two samples, 0..1; None without two good samples."""
    if prev is None or cur is None or cur.total <= prev.total:
        return None
    busy = max(0, cur.busy - prev.busy)
    return min(1.0, busy / (cur.total - prev.total))


def parse_meminfo(text: str) -> tuple[int, int] | None:
    """(used, total) bytes from /proc/meminfo; used is MemTotal - MemAvailable."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if key in ("MemTotal", "MemAvailable", "MemFree") and parts:
            try:
                values[key] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
            except ValueError:
                return None
    total = values.get("MemTotal")
    if total is None:
        return None
    available = values.get("MemAvailable", values.get("MemFree", 0))
    return max(0, total - available), total


def parse_pid_stat(text: str, ticks_per_second: int) -> float | None:
    """CPU seconds (user + system) of one process from /proc/<pid>/stat."""
    end = text.rfind(")")
    if end < 0 or ticks_per_second <= 0:
        return None
    fields = text[end + 2 :].split()
    try:  # fields 14 and 15 of the file; the name (field 2) ends at the last ')'
        return (int(fields[11]) + int(fields[12])) / ticks_per_second
    except (IndexError, ValueError):
        return None


def parse_status_rss(text: str) -> int | None:
    """Resident bytes (VmRSS) from /proc/<pid>/status; None for a process without memory of
    its own (a kernel thread, a zombie)."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            try:
                return int(parts[1]) * 1024
            except (IndexError, ValueError):
                return None
    return None


def docker_counters(stats: Any) -> TaskCounters | None:
    """A container's counters from the engine's stats document (``stream=false``): CPU
    nanoseconds since it started, memory used less the page cache, as ``docker stats``."""
    if not isinstance(stats, dict):
        return None
    try:
        cpu_ns = int(stats["cpu_stats"]["cpu_usage"]["total_usage"])
        mem = stats.get("memory_stats") or {}
        usage = int(mem.get("usage") or 0)
        extra = mem.get("stats") or {}
        cache = int(extra.get("inactive_file", extra.get("total_inactive_file", 0)) or 0)
    except (KeyError, TypeError, ValueError):
        return None
    return TaskCounters(cpu_seconds=cpu_ns / 1e9, memory=max(0, usage - cache))


def _moved(old: Any, new: Any, threshold: float, scale: float = 1.0) -> bool:
    if not isinstance(old, int | float) or not isinstance(new, int | float):
        return old != new
    return abs(new - old) > threshold * scale


def worth_publishing(last: Mapping[str, Any] | None, doc: Mapping[str, Any], now: float) -> bool:
    """Whether ``doc`` should go out after ``last`` (the one published last): first, every
    REFRESH_EVERY seconds, when a task came or went, or when a value moved by more than its
    threshold (5 points of CPU, 2% of memory or disk, 1.0 of load)."""
    if last is None or now - float(last.get("time", 0.0)) >= REFRESH_EVERY:
        return True
    if _moved(last.get("cpu"), doc.get("cpu"), CPU_THRESHOLD):
        return True
    if _moved(last.get("load1"), doc.get("load1"), LOAD_THRESHOLD):
        return True
    for used, total in (("memory_used", "memory_total"), ("disk_used", "disk_total")):
        scale = float(doc.get(total) or 0) or 1.0
        if last.get(total) != doc.get(total) or _moved(
            last.get(used), doc.get(used), BYTES_THRESHOLD, scale
        ):
            return True
    old_tasks, new_tasks = last.get("tasks") or {}, doc.get("tasks") or {}
    if set(old_tasks) != set(new_tasks):
        return True
    scale = float(doc.get("memory_total") or 0) or 1.0
    for tid, t in new_tasks.items():
        o = old_tasks[tid]
        if _moved(o.get("cpu"), t.get("cpu"), CPU_THRESHOLD) or _moved(
            o.get("memory"), t.get("memory"), BYTES_THRESHOLD, scale
        ):
            return True
    return False


@dataclass(slots=True)
class UsageSampler:
    """Turns successive raw readings into usage documents (deltas need the previous one)."""

    cpus: int = 1
    _cpu: CpuTimes | None = None
    _tasks: dict[str, tuple[float, float]] = field(default_factory=dict)  # id -> (t, cpu s)

    def sample(
        self,
        *,
        now: float,
        proc_stat: str,
        meminfo: str,
        load1: float | None,
        disk: tuple[int, int] | None,
        tasks: Mapping[str, TaskCounters],
    ) -> dict[str, Any]:
        cur = parse_proc_stat(proc_stat)
        cpu = cpu_fraction(self._cpu, cur)
        self._cpu = cur or self._cpu
        mem = parse_meminfo(meminfo)
        doc: dict[str, Any] = {
            "cpu": round(cpu, 4) if cpu is not None else None,
            "load1": round(load1, 2) if load1 is not None else None,
            "memory_used": mem[0] if mem else None,
            "memory_total": mem[1] if mem else None,
            "disk_used": disk[0] if disk else None,
            "disk_total": disk[1] if disk else None,
            "tasks": {},
            "time": round(now, 1),
        }
        seen: dict[str, tuple[float, float]] = {}
        for tid, counters in sorted(tasks.items()):
            prev = self._tasks.get(tid)
            share: float | None = None
            if prev is not None and now > prev[0]:
                used = max(0.0, counters.cpu_seconds - prev[1])
                share = round(min(1.0, used / ((now - prev[0]) * max(1, self.cpus))), 4)
            doc["tasks"][tid] = {"cpu": share, "memory": counters.memory}
            seen[tid] = (now, counters.cpu_seconds)
        self._tasks = seen
        return doc
