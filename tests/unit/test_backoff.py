from __future__ import annotations

import random

import pytest

from agent.model.backoff import Backoff


def test_delays_grow_by_factor_up_to_the_cap_within_jitter() -> None:
    random.seed(1)
    backoff = Backoff(initial_s=0.1, max_s=1.0, factor=2.0)
    bases = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    for base in bases:
        delay = backoff.next_delay_s()
        assert base * 0.9 <= delay <= base * 1.1


def test_reset_starts_over() -> None:
    backoff = Backoff(initial_s=0.5, max_s=10.0)
    for _ in range(5):
        backoff.next_delay_s()
    backoff.reset()
    assert 0.45 <= backoff.next_delay_s() <= 0.55


def test_jitter_varies_delays() -> None:
    random.seed(2)
    delays = {Backoff(initial_s=1.0).next_delay_s() for _ in range(20)}
    assert len(delays) > 1


@pytest.mark.parametrize("kwargs", [{"initial_s": 0}, {"initial_s": 2, "max_s": 1}, {"factor": 0.5}])
def test_rejects_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
