"""A manager daemon that records what its leader components do, for bench/scale.py.

    python bench/scale_trace.py TRACE_FILE --data-dir DIR

Runs `shoal daemon` for DIR with timing wrappers around the leader's pipeline and writes one
JSON line per event to TRACE_FILE: what ran ("what"), when it started (unix time "t"), how
long it took ("wall", including waits for Raft commits) and how much it handled. Pure steps
(planning a service, a scheduling decision, applying an entry) are timed alone, so their sum
is the event loop time they take. A 50 ms timer also reports the loop's lag ("lag" events,
only when over 50 ms). :func:`summarize` turns a trace into the lines bench/scale.py prints.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_out: Any = None


def emit(what: str, t: float, wall: float, **extra: Any) -> None:
    _out.write(json.dumps({"what": what, "t": t, "wall": wall, **extra}) + "\n")


def wrap_async(cls: type, name: str, what: str, count: Callable[..., dict[str, Any]]) -> None:
    orig = getattr(cls, name)

    @functools.wraps(orig)
    async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        extra = count(self, *args, **kwargs)
        t = time.time()
        try:
            return await orig(self, *args, **kwargs)
        finally:
            emit(what, t, time.time() - t, **extra)

    setattr(cls, name, timed)


def wrap_sync(
    owner: Any, name: str, what: str, count: Callable[..., dict[str, Any]] | None = None
) -> None:
    orig = getattr(owner, name)

    @functools.wraps(orig)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t = time.time()
        result = orig(*args, **kwargs)
        extra = count(result, *args, **kwargs) if count is not None else {}
        emit(what, t, time.time() - t, **extra)
        return result

    setattr(owner, name, timed)


def install() -> None:
    from agent.daemon import Daemon
    from agent.manager import orchestrator_loop, scheduler_loop
    from agent.manager.dispatcher import Dispatcher
    from agent.manager.monitor import Monitor
    from agent.manager.reconcile.orchestrator_loop import OrchestratorLoop
    from agent.manager.reconcile.scheduler_loop import SchedulerLoop
    from agent.manager.store import Store

    wrap_async(
        OrchestratorLoop, "_reconcile", "orchestrator.reconcile", lambda s, dirty: {"n": len(dirty)}
    )
    wrap_async(
        OrchestratorLoop,
        "_apply",
        "orchestrator.write",
        lambda s, plan: {"n": len(plan.put) + len(plan.delete)},
    )
    wrap_sync(
        orchestrator_loop, "plan_service", "orchestrator.plan", lambda r, *a, **k: {"n": len(a[1])}
    )
    wrap_async(SchedulerLoop, "_pass", "scheduler.pass", lambda s: {})
    wrap_sync(
        scheduler_loop,
        "schedule",
        "scheduler.decide",
        lambda r, pending, *a: {"n": len(pending), "placed": len(r.assigned)},
    )
    wrap_async(Dispatcher, "_flush", "dispatcher.assign", lambda s, dirty: {"n": len(dirty)})
    wrap_async(
        Dispatcher, "_write", "dispatcher.statuses", lambda s, batch, described: {"n": len(batch)}
    )
    wrap_async(Monitor, "_publish", "monitor.publish", lambda s, dirty: {"n": len(dirty)})
    wrap_sync(Store, "apply", "store.apply")

    run = Daemon.run

    async def run_with_lag(self: Any) -> int:
        async def lag() -> None:
            while True:
                t = time.monotonic()
                await asyncio.sleep(0.05)
                late = time.monotonic() - t - 0.05
                if late > 0.05:
                    emit("lag", time.time() - late, late)
                _out.flush()

        watcher = asyncio.create_task(lag())
        try:
            return await run(self)
        finally:
            watcher.cancel()

    Daemon.run = run_with_lag  # type: ignore[method-assign]


def summarize(path: Path, t0: float, t1: float) -> tuple[list[str], float | None]:
    """Per component, within [t0, t1] (unix time): calls, items, loop time of the pure steps
    and wall time of the steps that wait; the scheduler's passes that placed tasks; and when
    the last of them was committed (seconds after t0), or None."""
    calls: dict[str, int] = defaultdict(int)
    items: dict[str, int] = defaultdict(int)
    wall: dict[str, float] = defaultdict(float)
    decisions: list[dict[str, Any]] = []
    passes: list[tuple[float, float]] = []
    with open(path) as f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if not t0 <= e["t"] <= t1:
                continue
            w = e["what"]
            calls[w] += 1
            items[w] += int(e.get("n", 0))
            wall[w] += e["wall"]
            if w == "scheduler.decide" and e.get("placed"):
                decisions.append(e)
            elif w == "scheduler.pass":
                passes.append((e["t"], e["t"] + e["wall"]))
    committed = None
    if decisions:
        last = decisions[-1]["t"]
        ends = [end for start, end in passes if start <= last <= end]
        committed = (ends[0] if ends else last) - t0
    span = t1 - t0
    names = {"lag": "loop late (> 50 ms)"}
    out = [f"manager, first create to convergence ({span:.1f} s):"]
    for w in sorted(calls, key=lambda k: -wall[k]):
        out.append(
            f"  {names.get(w, w):22s} {calls[w]:5d} calls {items[w]:7d} items {wall[w]:6.2f} s"
            f" ({100 * wall[w] / span:3.0f}% of the time)"
        )
    out.append("  passes that placed tasks (at: placed/pending in decision time):")
    out += [
        f"    {e['t'] - t0:5.2f} s: {e['placed']}/{e['n']} in {e['wall'] * 1000:.0f} ms"
        for e in decisions
    ]
    if committed is not None:
        out.append(f"  last placement committed {committed:.2f} s after the first create")
    return out, committed


def main() -> None:
    global _out
    trace = Path(sys.argv[1])
    _out = open(trace, "a", buffering=1 << 16)
    atexit.register(_out.close)
    sys.path.insert(0, str(ROOT))
    install()
    from agent.cli.main import main as cli_main

    raise SystemExit(cli_main(["daemon", *sys.argv[2:]]))


if __name__ == "__main__":
    main()
