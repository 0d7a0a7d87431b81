"""How `service create|update|scale` without --detach judges convergence."""

from __future__ import annotations

import time
from typing import Any

from agent.cli.convergence import assess


def svc(replicas: int = 2, kind: str = "replicated", state: str = "", **status: Any) -> dict:  # type: ignore[type-arg]
    """A service as `service-inspect` returns it (Docker's shape), reduced to what matters."""
    mode = {
        "replicated": {"Replicated": {"Replicas": replicas}},
        "replicated-job": {"ReplicatedJob": {"TotalCompletions": replicas}},
        "global": {"Global": {}},
        "global-job": {"GlobalJob": {}},
    }[kind]
    out: dict[str, Any] = {"Spec": {"Mode": mode}, "Shoal": {}}
    if state:
        out["UpdateStatus"] = {"State": state, "Message": status.get("message", "")}
        if status.get("reason"):
            out["Shoal"]["UpdateReason"] = status["reason"]
    return out


def task(slot: int, state: str, desired: str = "running", **kw: Any) -> dict:  # type: ignore[type-arg]
    return {
        "id": kw.get("id", f"t{slot}{state}"),
        "slot": slot,
        "node_id": kw.get("node_id", "n1"),
        "node": kw.get("node", "n1"),
        "state": state,
        "desired_state": desired,
        "message": kw.get("message", state),
        "error": kw.get("error", ""),
        "updated": kw.get("updated", "2026-11-25T17:00:00.000+00:00"),
    }


def test_converges_when_every_slot_runs() -> None:
    p = assess(svc(2), [task(1, "running"), task(2, "starting")], since=0, failures={})
    assert not p.converged and not p.error
    assert p.lines[0] == "overall progress: 1 out of 2 tasks"
    p = assess(svc(2), [task(1, "running"), task(2, "running")], since=0, failures={})
    assert p.converged and p.lines[0] == "overall progress: 2 out of 2 tasks"


def test_an_update_converges_only_once_completed() -> None:
    tasks = [task(1, "running"), task(2, "running")]
    assert not assess(svc(state="updating"), tasks, since=0, failures={}, expect="update").converged
    p = assess(svc(state="completed"), tasks, since=0, failures={}, expect="update")
    assert p.converged


def test_an_automatic_rollback_is_an_error_once_it_completes() -> None:
    tasks = [task(1, "running"), task(2, "running")]
    started = svc(state="rollback_started", reason="update rolled back due to failure of task x")
    p = assess(started, tasks, since=0, failures={}, expect="update")
    assert not p.error and p.lines[0].startswith("rollback: ")
    done = svc(state="rollback_completed", reason="update rolled back due to failure of task x")
    p = assess(done, tasks, since=0, failures={}, expect="update")
    assert p.error == "rollback: update rolled back due to failure of task x"


def test_a_paused_update_is_an_error() -> None:
    p = assess(
        svc(state="paused", message="update paused due to failure of task y"),
        [],
        since=0,
        failures={},
        expect="update",
    )
    assert p.error == "update paused due to failure of task y"


def test_repeated_failures_of_one_slot_give_up_with_the_reason() -> None:
    failures: dict[str, set[str]] = {}
    now = "2026-11-25T17:00:10.000+00:00"
    for n in range(3):
        tasks = [
            task(
                1,
                "failed",
                desired="shutdown",
                id=f"f{i}",
                error="task: non-zero exit (1)",
                updated=now,
            )
            for i in range(n + 1)
        ] + [task(1, "starting")]
        p = assess(svc(1), tasks, since=0, failures=failures)
    assert p.error == "3 tasks of slot 1 failed: task: non-zero exit (1)"


def test_a_task_that_fits_nowhere_is_an_error_after_a_while() -> None:
    pending = [task(1, "pending", message="no suitable node (1 node has insufficient memory)")]
    assert not assess(svc(1), pending, since=time.time(), failures={}).error
    p = assess(svc(1), pending, since=time.time() - 10, failures={})
    assert p.error == "no suitable node (1 node has insufficient memory)"


def test_jobs_converge_on_completion_and_global_services_count_their_nodes() -> None:
    done = [task(1, "complete"), task(2, "complete")]
    assert assess(svc(2, "replicated-job"), done, since=0, failures={}).converged
    tasks = [task(0, "running", node_id="a", node="a"), task(0, "running", node_id="b", node="b")]
    p = assess(svc(0, "global"), tasks, since=0, failures={})
    assert p.converged and p.lines[0] == "overall progress: 2 out of 2 tasks"


def test_a_global_service_with_no_tasks_yet_waits_for_them() -> None:
    p = assess(svc(0, "global"), [], since=0, failures={})
    assert not p.converged and not p.error
    assert p.lines == ["overall progress: waiting for new tasks"]
    starting = [task(0, "starting", node_id="a", node="a")]
    assert not assess(svc(0, "global"), starting, since=0, failures={}).converged
    running = [task(0, "running", node_id="a", node="a")]
    assert assess(svc(0, "global"), running, since=0, failures={}).converged


def glob(eligible: list[str], state: str = "") -> dict:  # type: ignore[type-arg]
    base = svc(0, "global", state)
    return {**base, "Shoal": {**base.get("Shoal", {}), "EligibleNodes": eligible}}


def on(node: str, state: str) -> dict:  # type: ignore[type-arg]
    return task(0, state, node_id=node, node=node, id=f"t-{node}-{state}")


def test_a_global_service_waits_for_a_running_task_on_every_eligible_node() -> None:
    p = assess(glob(["a", "b"]), [on("a", "running")], since=0, failures={})
    assert not p.converged and p.lines[0] == "overall progress: 1 out of 2 tasks"
    p = assess(glob(["a", "b"]), [on("a", "running"), on("b", "starting")], since=0, failures={})
    assert not p.converged
    p = assess(glob(["a", "b"]), [on("a", "running"), on("b", "running")], since=0, failures={})
    assert p.converged and p.lines[0] == "overall progress: 2 out of 2 tasks"


def test_a_global_services_task_on_a_node_it_does_not_count_is_left_out() -> None:
    tasks = [on("a", "running"), on("gone", "starting")]
    p = assess(glob(["a"]), tasks, since=0, failures={})
    assert p.converged and p.lines == [
        "overall progress: 1 out of 1 task",
        "a: running   [=================================================>]",
    ]


def test_a_global_service_no_node_can_run_is_an_error_after_a_while() -> None:
    p = assess(glob([]), [], since=time.time(), failures={})
    assert not p.converged and not p.error
    assert p.lines == ["overall progress: waiting for new tasks"]
    p = assess(glob([]), [], since=time.time() - 10, failures={})
    assert not p.converged
    assert p.error.startswith("no node can run this global service's tasks now")


def test_a_manual_rollback_says_so_then_reports_its_completion() -> None:
    tasks = [task(1, "running")]
    started = svc(1, state="rollback_started", message="manually requested rollback")
    p = assess(started, tasks, since=0, failures={}, expect="rollback")
    assert p.lines[:2] == [
        "rollback: manually requested rollback",
        "overall progress: rolling back update: 1 out of 1 task",
    ]
    assert not p.converged
    done = svc(1, state="rollback_completed", message="rollback completed")
    p = assess(done, tasks, since=0, failures={}, expect="rollback")
    assert p.converged and p.lines[0] == "rollback: manually requested rollback"
    assert p.after == ["rollback: rollback completed"]


def test_follow_prints_a_manual_rollback_as_docker_does() -> None:
    import io

    from agent.cli.convergence import follow

    states = iter(["rollback_started", "rollback_completed"])

    def fetch() -> tuple[dict, list[dict]]:  # type: ignore[type-arg]
        state = next(states, "rollback_completed")
        message = "manually requested rollback" if state == "rollback_started" else ""
        message = message or "rollback completed"
        return svc(1, state=state, message=message), [task(1, "running")]

    out = io.StringIO()
    assert follow(fetch, expect="rollback", out=out, poll=0) == 0
    assert out.getvalue().splitlines() == [
        "rollback: manually requested rollback",
        "overall progress: rolling back update: 1 out of 1 task",
        "1/1: running   [=================================================>]",
        "verify: Service converged",
        "rollback: rollback completed",
    ]
