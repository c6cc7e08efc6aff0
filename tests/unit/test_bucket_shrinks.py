"""bucket_shrinks: which limit changes must start from an empty queue (see its docstring)."""

from __future__ import annotations

import pytest

from agent.model.annotations import desired_shaping
from agent.model.tbf_params import TbfParams
from agent.model.tbf import bucket_bytes, bucket_shrinks, expected_tbf


def params(annotations: dict[str, str]) -> TbfParams:
    # Through the annotations, as the reconciler gets them.
    (want,) = [d for d in desired_shaping(annotations).values() if d.params is not None]
    assert want.params is not None
    return want.params


RATE = "kubernetes.io/ingress-bandwidth"
BURST = "podbw.io/ingress-burst"
LATENCY = "podbw.io/ingress-latency"

CHANGES = [
    # (before, after, shrinks)
    ({RATE: "100M"}, {RATE: "20M"}, True),  # the wedge: 37.5 KB -> 7.5 KB
    ({RATE: "20M"}, {RATE: "100M"}, False),  # an increase grows the default bucket
    ({RATE: "10M"}, {RATE: "1M"}, True),  # 3750 B -> the 3028 B floor
    ({RATE: "20M", BURST: "400k"}, {RATE: "20M"}, True),  # only the burst annotation: 50 KB -> 7.5 KB
    ({RATE: "20M"}, {RATE: "20M", BURST: "400k"}, False),
    ({RATE: "100M", BURST: "1M"}, {RATE: "20M", BURST: "1M"}, False),  # same bucket, lower rate
    ({RATE: "20M", BURST: "1M"}, {RATE: "100M", BURST: "1M"}, False),
    ({RATE: "20M"}, {RATE: "20M", LATENCY: "20ms"}, False),  # only the queue limit
    ({RATE: "20M", LATENCY: "20ms"}, {RATE: "20M"}, False),
    # 256 KiB at both rates, but tc's buffer is whole microseconds: 262,120 B at 1G, 262,000 B at
    # 2G. Counted as a shrink (one needless queue flush) rather than risk a wedged device.
    ({RATE: "1G"}, {RATE: "2G"}, True),
    ({RATE: "2G"}, {RATE: "1G"}, False),
]


@pytest.mark.parametrize(("before", "after", "shrinks"), CHANGES)
def test_bucket_shrinks(before: dict[str, str], after: dict[str, str], shrinks: bool) -> None:
    assert bucket_shrinks(expected_tbf(params(before)), params(after)) is shrinks


def test_an_unchanged_limit_never_shrinks() -> None:
    for rate in ("1k", "1M", "10M", "123456789", "1G", "10G", "34G"):
        p = params({RATE: rate})
        assert not bucket_shrinks(expected_tbf(p), p)


def test_bucket_bytes_is_the_burst_less_the_microsecond_rounding() -> None:
    p = params({RATE: "1G"})  # 262,144 B at 125 MB/s = 2097.152 us: tc gives 2097 us, 32,765 ticks
    assert p.burst_bytes == 262_144
    assert bucket_bytes(expected_tbf(p)) == 262_120
    p = params({RATE: "20M"})  # 7500 B at 2.5 MB/s: exactly 3000 us
    assert bucket_bytes(expected_tbf(p)) == 7500
