"""TBF parameters from a rate (and optional burst and latency): defaults, floors, kernel limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model.tbf import (
    DEFAULT_BURST_TIME_US,
    DEFAULT_LATENCY_US,
    GSO_LEGACY_MAX_BYTES,
    MAX_BUCKET_TIME_US,
    MAX_BURST_BYTES,
    MAX_DEFAULT_BURST_BYTES,
    MAX_LIMIT_BYTES,
    MAX_RATE_BYTES_PER_S,
    MIN_BURST_BYTES,
    MIN_DEFAULT_BURST_TIME_US,
    MIN_DEFAULT_LIMIT_BYTES,
    TbfError,
    gso_max_bytes,
    tbf_params,
    without_limit_floor,
    xmit_ticks,
)
from agent.model.tbf_params import TbfParams

PROPERTY = settings(max_examples=300, deadline=None)


def test_constants() -> None:
    assert DEFAULT_BURST_TIME_US == 3000
    assert MIN_BURST_BYTES == 3028
    assert DEFAULT_LATENCY_US == 1500
    assert MIN_DEFAULT_LIMIT_BYTES == 8 * 1514
    assert MAX_DEFAULT_BURST_BYTES == 262_144
    assert MIN_DEFAULT_BURST_TIME_US == 1000
    assert GSO_LEGACY_MAX_BYTES == 65536
    assert MAX_RATE_BYTES_PER_S == 4_294_967_295
    assert MAX_BUCKET_TIME_US == 60_000_000
    assert MAX_LIMIT_BYTES == 4_294_967_295
    assert MAX_BURST_BYTES == 4_294_967_295


DEFAULTS = [
    # rate bit/s, rate B/s, burst = max(min(3 ms of rate, 256 KiB), 1 ms of rate, 3028 B),
    # limit = max(burst + max(1.5 ms of rate, 1514 B), 12112 B)
    (10**6, 125_000, 3028, 12_112),  # 3 ms = 375 B, 1.5 ms = 188 B: all floors apply
    (10**7, 1_250_000, 3750, 12_112),  # burst + 1.5 ms = 5625 B: the 8-frame limit floor
    (21_530_664, 2_691_333, 8074, 12_112),  # burst + 1.5 ms = 12111 B: just below 8 frames
    (21_530_672, 2_691_334, 8075, 12_113),  # just above: the floor no longer binds
    (5 * 10**7, 6_250_000, 18_750, 18_750 + 9375),
    (10**8, 12_500_000, 37_500, 37_500 + 18_750),
    (699_050_664, 87_381_333, 262_144, 262_144 + 131_072),  # 3 ms of rate = 256 KiB
    (699_050_672, 87_381_334, 262_144, 262_144 + 131_073),  # above: the burst stays 256 KiB
    (10**9, 125_000_000, 262_144, 262_144 + 187_500),
    (2_097_152_000, 262_144_000, 262_144, 262_144 + 393_216),  # 1 ms of rate = 256 KiB
    (2_097_152_008, 262_144_001, 262_145, 262_145 + 393_217),  # above: 1 ms of rate
    (5 * 10**9, 625_000_000, 625_000, 625_000 + 937_500),
    (10**10, 1_250_000_000, 1_250_000, 1_250_000 + 1_875_000),
    (1000, 125, 3028, 12_112),  # the smallest rate the annotations accept
    (8_074_664, 1_009_333, 3028, 12_112),  # 3 ms of rate is just below the burst floor
    (8_074_672, 1_009_334, 3029, 12_112),  # just above: rounded up
    (1001, 126, 3028, 12_112),  # bits/8 rounded up
]


@pytest.mark.parametrize(("rate_bits", "rate_bytes", "burst", "limit"), DEFAULTS)
def test_default_burst_and_limit(rate_bits: int, rate_bytes: int, burst: int, limit: int) -> None:
    assert tbf_params(rate_bits) == TbfParams(rate_bytes, burst, limit)


def test_rate_just_below_and_at_the_32_bit_limit() -> None:
    top = tbf_params(8 * MAX_RATE_BYTES_PER_S)
    assert top.rate_bytes_per_s == MAX_RATE_BYTES_PER_S
    assert top.burst_bytes == 4_294_968  # ceil(4294967295 * 1 / 1000)
    assert top.limit_bytes == top.burst_bytes + 6_442_451  # ceil(4294967295 * 1.5 / 1000)
    assert tbf_params(8 * MAX_RATE_BYTES_PER_S - 1).rate_bytes_per_s == MAX_RATE_BYTES_PER_S


@pytest.mark.parametrize("rate_bits", [8 * MAX_RATE_BYTES_PER_S + 1, 8 * 2**32, 10**15])
def test_rate_above_the_32_bit_limit_is_rejected_clearly(rate_bits: int) -> None:
    with pytest.raises(TbfError, match=r"32-bit rate limit .*34\.36 Gbit/s") as info:
        tbf_params(rate_bits)
    assert info.value.field == "rate"


@pytest.mark.parametrize("rate_bits", [0, -1, -(10**9), True, 1.5, 10.0**7, "10M", None])
def test_rate_must_be_a_positive_int(rate_bits: object) -> None:
    with pytest.raises(TbfError, match="rate must be a positive integer") as info:
        tbf_params(rate_bits)  # type: ignore[arg-type]
    assert info.value.field == "rate"


EXPLICIT_BURSTS = [
    # rate bit/s, burst bits, burst bytes
    (10**8, 1514 * 8, 1514),  # one full frame: the smallest allowed
    (10**8, 1513 * 8 + 1, 1514),  # rounded up to whole bytes
    (10**8, 10**6, 125_000),
    (10**9, 8 * 10**6, 10**6),
    (10**6, 8 * 1600, 1600),  # below the default's two-frame floor is allowed explicitly
]


@pytest.mark.parametrize(("rate_bits", "burst_bits", "burst_bytes"), EXPLICIT_BURSTS)
def test_explicit_burst(rate_bits: int, burst_bits: int, burst_bytes: int) -> None:
    params = tbf_params(rate_bits, burst_bits=burst_bits)
    assert params.burst_bytes == burst_bytes
    queue = max(-(-params.rate_bytes_per_s * DEFAULT_LATENCY_US // 10**6), 1514)
    assert params.limit_bytes == max(burst_bytes + queue, MIN_DEFAULT_LIMIT_BYTES)


@pytest.mark.parametrize("burst_bits", [1513 * 8, 8, 1000, 12_000])
def test_burst_below_one_full_frame_is_rejected(burst_bits: int) -> None:
    with pytest.raises(TbfError, match="below one full frame .*drop every full-size packet") as info:
        tbf_params(10**8, burst_bits=burst_bits)
    assert info.value.field == "burst"


@pytest.mark.parametrize("burst_bits", [0, -8, True, 12112.0, "12k"])
def test_burst_must_be_a_positive_int(burst_bits: object) -> None:
    with pytest.raises(TbfError, match="burst must be a positive integer") as info:
        tbf_params(10**8, burst_bits=burst_bits)  # type: ignore[arg-type]
    assert info.value.field == "burst"


def test_burst_above_u32_bytes_is_rejected() -> None:
    # CRI-O's 2^32*8-1 bits is 2^32 bytes rounded up: one more than the kernel holds.
    with pytest.raises(TbfError, match="above the kernel's u32 limit") as info:
        tbf_params(8 * MAX_RATE_BYTES_PER_S, burst_bits=2**32 * 8 - 1)
    assert info.value.field == "burst"


def test_bucket_time_limit_is_inclusive() -> None:
    # 1 kbit/s = 125 B/s: 60 s of it is 7500 bytes.
    assert tbf_params(1000, burst_bits=7500 * 8).burst_bytes == 7500
    with pytest.raises(TbfError, match="more than 60 s to refill") as info:
        tbf_params(1000, burst_bits=7501 * 8)
    assert info.value.field == "burst"


def test_default_burst_never_exceeds_the_bucket_time() -> None:
    # The two-frame floor at the lowest accepted rate is 24 s of tokens: still allowed.
    assert tbf_params(1000).burst_bytes == MIN_BURST_BYTES


def test_rate_too_low_for_the_default_burst_blames_the_rate() -> None:
    # 9 bit/s = 2 B/s: two frames take 1514 s. Below the annotations' 1k minimum.
    with pytest.raises(TbfError, match="more than 60 s to refill") as info:
        tbf_params(9)
    assert info.value.field == "rate"


EXPLICIT_LATENCIES = [
    # rate bit/s, latency us, limit - burst (no 8-frame floor: the latency was asked for)
    (10**8, 5000, 62_500),
    (10**8, 1, 1514),  # the queue always holds one full frame
    (10**8, 0, 1514),
    (10**9, 10_000_000, 1_250_000_000),
    (10**7, 1234, 1543),  # ceil(1_250_000 * 1234 / 1e6) = ceil(1542.5)
    (10**6, 2000, 1514),  # 250 B at 1 Mbit/s: one frame, and the limit below 8 frames
]


@pytest.mark.parametrize(("rate_bits", "latency_us", "queue_bytes"), EXPLICIT_LATENCIES)
def test_explicit_latency(rate_bits: int, latency_us: int, queue_bytes: int) -> None:
    params = tbf_params(rate_bits, latency_us=latency_us)
    assert params.limit_bytes - params.burst_bytes == queue_bytes
    assert params.burst_bytes == tbf_params(rate_bits).burst_bytes


def test_explicit_burst_and_latency_together() -> None:
    assert tbf_params(10**8, burst_bits=8 * 20_000, latency_us=4000) == TbfParams(
        12_500_000, 20_000, 20_000 + 50_000
    )


@pytest.mark.parametrize("latency_us", [-1, True, 2.0, "2ms"])
def test_latency_must_be_a_non_negative_int(latency_us: object) -> None:
    with pytest.raises(TbfError, match="latency must be a non-negative integer") as info:
        tbf_params(10**8, latency_us=latency_us)  # type: ignore[arg-type]
    assert info.value.field == "latency"


def test_default_limit_floor_holds_eight_frames_even_with_an_explicit_burst() -> None:
    assert tbf_params(10**7, burst_bits=8 * 1514).limit_bytes == MIN_DEFAULT_LIMIT_BYTES
    assert tbf_params(10**7, burst_bits=8 * 1514, latency_us=0).limit_bytes == 2 * 1514


def test_limit_above_u32_bytes_blames_the_latency() -> None:
    # 4294967295 B/s for 2 s: 8.6 GB of queue.
    with pytest.raises(TbfError, match="queue limit .* above the kernel's u32 limit") as info:
        tbf_params(8 * MAX_RATE_BYTES_PER_S, latency_us=2_000_000)
    assert info.value.field == "latency"
    # Right at the edge: burst + queue == 2^32 - 1 is allowed.
    rate_bytes = 10**9
    burst_bytes = 10**6  # 1 ms of rate
    queue_bytes = MAX_LIMIT_BYTES - burst_bytes
    latency_us = queue_bytes * 10**6 // rate_bytes  # rate * latency rounds up to at most queue
    params = tbf_params(8 * rate_bytes, latency_us=latency_us)
    assert params.limit_bytes <= MAX_LIMIT_BYTES
    with pytest.raises(TbfError):
        tbf_params(8 * rate_bytes, latency_us=latency_us + 1)


def test_limit_above_u32_bytes_blames_an_explicit_burst_with_default_latency() -> None:
    with pytest.raises(TbfError, match="queue limit") as info:
        tbf_params(8 * MAX_RATE_BYTES_PER_S, burst_bits=8 * MAX_BURST_BYTES)
    assert info.value.field == "burst"


def test_tbf_error_is_a_value_error() -> None:
    assert issubclass(TbfError, ValueError)


@PROPERTY
@given(
    rate_bits=st.integers(1, 8 * MAX_RATE_BYTES_PER_S + 100),
    burst_bits=st.none() | st.integers(1, 2**36),
    latency_us=st.none() | st.integers(0, 20_000_000),
)
def test_params_are_always_kernel_safe_or_an_error(
    rate_bits: int, burst_bits: int | None, latency_us: int | None
) -> None:
    try:
        params = tbf_params(rate_bits, burst_bits, latency_us)
    except TbfError as exc:
        assert exc.field in ("rate", "burst", "latency")
        return
    assert params.rate_bytes_per_s * 8 >= rate_bits > (params.rate_bytes_per_s - 1) * 8
    assert 1514 <= params.burst_bytes <= MAX_BURST_BYTES
    assert params.burst_bytes + 1514 <= params.limit_bytes <= MAX_LIMIT_BYTES
    assert params.burst_bytes * 10**6 <= MAX_BUCKET_TIME_US * params.rate_bytes_per_s
    if burst_bits is None:
        one_ms = -(-params.rate_bytes_per_s // 1000)
        assert MIN_BURST_BYTES <= params.burst_bytes <= max(MAX_DEFAULT_BURST_BYTES, one_ms, MIN_BURST_BYTES)
    if latency_us is None:
        assert params.limit_bytes >= MIN_DEFAULT_LIMIT_BYTES
    # The queue beyond the bucket is the requested latency at the rate, rounded up.
    requested = DEFAULT_LATENCY_US if latency_us is None else latency_us
    queue = params.limit_bytes - params.burst_bytes
    assert queue * 10**6 >= min(requested * params.rate_bytes_per_s, 1514 * 10**6)


GSO = [
    # burst bytes -> gso_max_size for the pod's eth0 (None: the kernel's default already fits)
    (1514, 1448),  # one frame: single-segment packets
    (3028, 2896),  # two frames
    (3750, 3586),  # 10 Mbit/s defaults
    (18_750, 17_932),  # 50 Mbit/s defaults
    (37_500, 35_865),  # 100 Mbit/s defaults
    (68_523, 65_535),  # the largest bucket that still needs a cap
    (68_524, None),  # 68524 * 1448 // 1514 = 65536: the default fits
    (262_144, None),  # defaults from ~700 Mbit/s up
]


@pytest.mark.parametrize(("burst_bytes", "gso"), GSO)
def test_gso_max_bytes(burst_bytes: int, gso: int | None) -> None:
    assert gso_max_bytes(TbfParams(125_000, burst_bytes, burst_bytes + 1514)) == gso


@PROPERTY
@given(burst_bytes=st.integers(1514, 10**7))
def test_gso_packets_of_full_frames_fit_the_bucket(burst_bytes: int) -> None:
    gso = gso_max_bytes(TbfParams(10**6, burst_bytes, burst_bytes + 1514))
    size = GSO_LEGACY_MAX_BYTES if gso is None else gso
    assert 1448 <= size <= GSO_LEGACY_MAX_BYTES
    # A GSO packet carries at most size // 1448 full segments; TBF counts 1514 bytes for each.
    assert (size // 1448) * 1514 <= burst_bytes


WITHOUT_FLOOR = [
    # rate bit/s, limit with the floor, limit without (burst + 1.5 ms of rate, at least 1 frame)
    (10**7, 12_112, 3750 + 1875),
    (10**6, 12_112, 3028 + 1514),  # 1.5 ms = 188 B: the one-frame queue floor
    (10**8, 37_500 + 18_750, 37_500 + 18_750),  # the floor never bound: unchanged
    (10**9, 262_144 + 187_500, 262_144 + 187_500),
]


@pytest.mark.parametrize(("rate_bits", "floored", "unfloored"), WITHOUT_FLOOR)
def test_without_limit_floor(rate_bits: int, floored: int, unfloored: int) -> None:
    params = tbf_params(rate_bits)
    assert params.limit_bytes == floored
    assert without_limit_floor(params) == TbfParams(params.rate_bytes_per_s, params.burst_bytes, unfloored)


def test_without_limit_floor_never_raises_the_limit() -> None:
    explicit = tbf_params(10**7, burst_bits=8 * 20_000, latency_us=0)  # limit = burst + 1 frame
    assert without_limit_floor(explicit) == explicit


@PROPERTY
@given(rate_bits=st.integers(1000, 8 * MAX_RATE_BYTES_PER_S), burst_bits=st.none() | st.integers(1514 * 8, 2**30))
def test_without_limit_floor_is_tbf_params_with_the_default_latency_and_no_floor(
    rate_bits: int, burst_bits: int | None
) -> None:
    try:
        params = tbf_params(rate_bits, burst_bits)
    except TbfError:
        return
    local = without_limit_floor(params)
    assert local.rate_bytes_per_s == params.rate_bytes_per_s and local.burst_bytes == params.burst_bytes
    assert params.burst_bytes + 1514 <= local.limit_bytes <= params.limit_bytes
    assert local == tbf_params(rate_bits, burst_bits, DEFAULT_LATENCY_US)


@pytest.mark.parametrize("seed", range(5))
def test_xmit_ticks_rounds_exactly_as_pyroute2_which_writes_the_qdiscs(seed: int) -> None:
    # Drift is any difference from what the kernel holds, and pyroute2 computed what it holds.
    import random

    from pyroute2.netlink.rtnl.tcmsg.common import calc_xmittime

    rng = random.Random(seed)
    for _ in range(20_000):
        rate, size = rng.randint(125, 2**32 - 1), rng.randint(1514, 2**26)
        assert xmit_ticks(rate, size) == calc_xmittime(rate, size), (rate, size)
