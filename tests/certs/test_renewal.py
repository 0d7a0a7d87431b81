import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certs import CertError, Identity, Role, needs_renewal, renewal_time

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@given(
    lifetime=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3650)),
    seed=st.integers(min_value=0, max_value=2**64),
)
def test_renewal_time_is_between_50_and_80_percent_of_the_lifetime(
    lifetime: timedelta, seed: int
) -> None:
    when = renewal_time(START, START + lifetime, random.Random(seed))
    assert START + lifetime * 0.5 <= when <= START + lifetime * 0.8


def test_renewal_time_differs_between_seeds() -> None:
    end = START + timedelta(days=90)
    times = {renewal_time(START, end, random.Random(seed)) for seed in range(50)}
    assert len(times) == 50


def test_renewal_time_is_reproducible_from_a_seed() -> None:
    end = START + timedelta(days=90)
    assert renewal_time(START, end, random.Random(7)) == renewal_time(START, end, random.Random(7))


def test_renewal_time_refuses_a_window_that_ends_before_it_starts() -> None:
    with pytest.raises(CertError, match=r"ends .* before it starts"):
        renewal_time(START, START - timedelta(days=1), random.Random(0))


def test_needs_renewal_is_false_before_half_and_true_after_80_percent_of_the_lifetime() -> None:
    identity = Identity(
        node_id="abcdefghij",
        role=Role.WORKER,
        cluster_id="cluster1",
        serial=1,
        not_before=START,
        not_after=START + timedelta(days=100),
    )
    rng = random.Random(0)
    assert not needs_renewal(identity, START + timedelta(days=49), rng)
    assert needs_renewal(identity, START + timedelta(days=81), rng)
