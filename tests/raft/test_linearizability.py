"""The linearizability checker on small histories whose verdict is known."""

from __future__ import annotations

from .linearizability import Operation, check_history, check_register


def put(value: str, call: int, ret: int | None, key: str = "k") -> Operation:
    return Operation(key, "put", value, call, ret)


def get(value: str | None, call: int, ret: int | None, key: str = "k") -> Operation:
    return Operation(key, "get", value, call, ret)


def test_an_empty_history_is_linearizable() -> None:
    assert check_register([])


def test_a_read_after_a_write_sees_it() -> None:
    assert check_register([put("a", 1, 2), get("a", 3, 4)])


def test_a_read_of_a_never_written_value_is_not_linearizable() -> None:
    assert not check_register([put("a", 1, 2), get("b", 3, 4)])


def test_a_stale_read_after_a_completed_write_is_not_linearizable() -> None:
    assert not check_register([put("a", 1, 2), get(None, 3, 4)])
    assert not check_register([put("a", 1, 2), put("b", 3, 4), get("a", 5, 6)])


def test_a_read_concurrent_with_a_write_may_see_either_value() -> None:
    assert check_register([put("a", 1, 2), put("b", 3, 6), get("a", 4, 5)])
    assert check_register([put("a", 1, 2), put("b", 3, 6), get("b", 4, 5)])


def test_reads_may_not_go_back_in_time() -> None:
    # the first read sees b, so b took effect before it returned; a later read cannot see a
    history = [put("a", 1, 2), put("b", 3, 10), get("b", 4, 5), get("a", 6, 7)]
    assert not check_register(history)


def test_overlapping_writes_may_take_effect_in_either_order() -> None:
    # W(a) spans the whole history; W(b) completes inside it; a later read of a is fine
    assert check_register([put("a", 0, 10), put("b", 1, 2), get("a", 3, 4)])
    assert check_register([put("a", 0, 10), put("b", 1, 2), get("b", 3, 4)])


def test_a_write_with_an_unknown_outcome_may_have_taken_effect() -> None:
    assert check_register([put("a", 1, 2), put("b", 3, None), get("b", 4, 5)])


def test_a_write_with_an_unknown_outcome_may_not_have_taken_effect() -> None:
    assert check_register([put("a", 1, 2), put("b", 3, None), get("a", 4, 5)])


def test_a_write_with_an_unknown_outcome_cannot_take_effect_before_it_was_invoked() -> None:
    assert not check_register([get("b", 1, 2), put("b", 3, None)])


def test_a_write_with_an_unknown_outcome_takes_effect_once_at_most() -> None:
    history = [put("a", 1, 2), put("b", 3, None), get("b", 4, 5), put("c", 6, 7), get("b", 8, 9)]
    assert not check_register(history)


def test_reads_with_an_unknown_outcome_say_nothing() -> None:
    assert check_register([put("a", 1, 2), get("zzz", 3, None)])


def test_keys_are_checked_separately() -> None:
    history = [
        put("a", 1, 2, key="x"),
        get("a", 3, 4, key="x"),
        put("a", 5, 6, key="y"),
        get(None, 7, 8, key="y"),
    ]
    assert check_history(history) == ["y"]


def test_a_long_concurrent_history_is_checked_quickly() -> None:
    history = []
    t = 0
    for i in range(300):
        # three clients overlapping: a write, a read of the previous value, another write
        history.append(put(f"v{i}", t, t + 3))
        history.append(get(f"v{i - 1}" if i else None, t + 1, t + 2))
        t += 4
    assert check_register(history)
