"""The one pure function that turns a requested rate (and optional burst and latency) into the TBF
parameters podbw puts in the kernel, and the kernel's side of them. Exact integer arithmetic.

Why each default is what it is, with the measurements: bench/RESULTS.md, "TBF defaults".
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.model.tbf_params import TbfParams

FRAME_BYTES = 1514
"""A full-size Ethernet frame at MTU 1500, as TBF counts it (headers included)."""
SEGMENT_PAYLOAD_BYTES = 1448
"""TCP payload of that frame (IPv4 + TCP with timestamps): what a GSO packet carries per frame."""
DEFAULT_BURST_TIME_US = 3000
"""Bucket = 3 ms of rate: scales with the rate, yet lets little more than 3 ms over the limit."""
MAX_DEFAULT_BURST_BYTES = 4 * 65536
"""...at most four of the largest GSO packets: a longer bucket only lengthens the queue."""
MIN_DEFAULT_BURST_TIME_US = 1000
"""...at least 1 ms of rate: the bucket carries the rate over a late dequeue timer."""
MIN_BURST_BYTES = 2 * FRAME_BYTES
"""TBF drops a packet larger than its bucket; with one frame it must refill between packets."""
MIN_EXPLICIT_BURST_BYTES = FRAME_BYTES
"""An explicit burst may go down to one full frame, never below (that drops every full frame)."""
DEFAULT_LATENCY_US = 1500
"""Queue limit = bucket + 1.5 ms of rate: the least where one BBR flow still reaches the rate."""
MIN_QUEUE_BYTES = FRAME_BYTES
"""The queue beyond the bucket holds at least one full frame, even at tiny rates or latencies."""
MIN_DEFAULT_LIMIT_BYTES = 8 * FRAME_BYTES
"""With the default latency the limit holds at least 8 frames: what remote BBR keeps in flight."""
GSO_LEGACY_MAX_BYTES = 65536
"""The kernel's default gso_max_size (GSO_LEGACY_MAX_SIZE) for a veth."""
MAX_RATE_BYTES_PER_S = 2**32 - 1
"""Kernel TBF's 32-bit rate field: podbw does not send TCA_TBF_RATE64 (~34.36 Gbit/s at most)."""
MAX_BURST_BYTES = 2**32 - 1
"""The burst is handed over as a u32 byte count (tc's `burst`)."""
MAX_BUCKET_TIME_US = 60_000_000
"""TBF stores the bucket as a u32 of psched ticks (~275 s at most); no sane bucket is near 60 s."""
MAX_LIMIT_BYTES = 2**32 - 1
"""TBF's queue limit is a u32 of bytes."""
TICKS_PER_US = 1000 / 64
"""psched ticks per microsecond, as tc computes them from /proc/net/psched (1000 and 64 on every
kernel since hrtimers: PSCHED_SHIFT 6)."""
PSCHED_TICK_NS = 64
"""One psched tick: the unit TBF stores its bucket in."""

_US_PER_S = 1_000_000


class TbfError(ValueError):
    """Parameters the kernel's TBF cannot hold, or that would drop every full-size frame.

    `field` names the input at fault ("rate", "burst" or "latency") so that callers can point
    at the annotation that caused it."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _gbit(rate_bytes_per_s: int) -> str:
    return f"{rate_bytes_per_s * 8 / 1e9:.2f} Gbit/s"


def tbf_params(
    rate_bits_per_s: int,
    burst_bits: int | None = None,
    latency_us: int | None = None,
) -> TbfParams:
    """TBF rate, bucket and queue limit for a limit of `rate_bits_per_s`.

    burst: `burst_bits` if given, else 3 ms of rate, at most 256 KiB but at least 1 ms of rate
    and two full frames.
    limit: burst + `latency_us` of rate (default 1.5 ms), at least burst + one full frame; with the
    default latency also at least 8 full frames.
    """
    if not _is_int(rate_bits_per_s) or rate_bits_per_s <= 0:
        raise TbfError(f"rate must be a positive integer of bits/s, got {rate_bits_per_s!r}", "rate")
    rate_bytes_per_s = _ceil_div(rate_bits_per_s, 8)
    if rate_bytes_per_s > MAX_RATE_BYTES_PER_S:
        raise TbfError(
            f"rate {rate_bits_per_s} bit/s is above the kernel TBF's 32-bit rate limit "
            f"({MAX_RATE_BYTES_PER_S} bytes/s, {_gbit(MAX_RATE_BYTES_PER_S)}); "
            "podbw does not send 64-bit rates",
            "rate",
        )

    if burst_bits is None:
        burst_bytes = max(
            min(_ceil_div(rate_bytes_per_s * DEFAULT_BURST_TIME_US, _US_PER_S), MAX_DEFAULT_BURST_BYTES),
            _ceil_div(rate_bytes_per_s * MIN_DEFAULT_BURST_TIME_US, _US_PER_S),
            MIN_BURST_BYTES,
        )
    else:
        if not _is_int(burst_bits) or burst_bits <= 0:
            raise TbfError(f"burst must be a positive integer of bits, got {burst_bits!r}", "burst")
        burst_bytes = _ceil_div(burst_bits, 8)
        if burst_bytes < MIN_EXPLICIT_BURST_BYTES:
            raise TbfError(
                f"burst {burst_bytes} bytes is below one full frame ({MIN_EXPLICIT_BURST_BYTES} "
                "bytes): TBF would drop every full-size packet",
                "burst",
            )
        if burst_bytes > MAX_BURST_BYTES:
            raise TbfError(
                f"burst {burst_bytes} bytes is above the kernel's u32 limit ({MAX_BURST_BYTES} bytes)",
                "burst",
            )
    # burst / rate <= MAX_BUCKET_TIME_US, cross-multiplied to stay in integers.
    if burst_bytes * _US_PER_S > MAX_BUCKET_TIME_US * rate_bytes_per_s:
        # With the default burst only a rate far below the annotations' 1k minimum gets here.
        raise TbfError(
            f"burst {burst_bytes} bytes takes more than {MAX_BUCKET_TIME_US // _US_PER_S} s to "
            f"refill at {rate_bytes_per_s} bytes/s; TBF cannot hold a bucket that long",
            "burst" if burst_bits is not None else "rate",
        )

    latency_given = latency_us is not None
    if latency_us is None:
        latency_us = DEFAULT_LATENCY_US
    elif not _is_int(latency_us) or latency_us < 0:
        raise TbfError(f"latency must be a non-negative integer of us, got {latency_us!r}", "latency")
    queue_bytes = max(_ceil_div(rate_bytes_per_s * latency_us, _US_PER_S), MIN_QUEUE_BYTES)
    limit_bytes = burst_bytes + queue_bytes
    if not latency_given:
        limit_bytes = max(limit_bytes, MIN_DEFAULT_LIMIT_BYTES)
    if limit_bytes > MAX_LIMIT_BYTES:
        raise TbfError(
            f"queue limit {limit_bytes} bytes (burst {burst_bytes} + {latency_us} us at "
            f"{rate_bytes_per_s} bytes/s) is above the kernel's u32 limit ({MAX_LIMIT_BYTES} bytes)",
            "latency" if latency_given else ("burst" if burst_bits is not None else "rate"),
        )
    return TbfParams(
        rate_bytes_per_s=rate_bytes_per_s, burst_bytes=burst_bytes, limit_bytes=limit_bytes
    )


def gso_max_bytes(params: TbfParams) -> int | None:
    """The gso_max_size for the pod's eth0 under an egress bucket of `params`, or None when any
    GSO packet of the kernel's default size already fits the bucket.

    TBF splits a GSO packet larger than its bucket and loses its tail when the queue is short;
    capped so a GSO packet of full frames fits the bucket, the pod's TCP meets back-pressure
    from its own qdisc instead of losses.
    """
    if params.burst_bytes * SEGMENT_PAYLOAD_BYTES // FRAME_BYTES >= GSO_LEGACY_MAX_BYTES:
        return None
    return max(params.burst_bytes * SEGMENT_PAYLOAD_BYTES // FRAME_BYTES, SEGMENT_PAYLOAD_BYTES)


def without_limit_floor(params: TbfParams) -> TbfParams:
    """`params` (made with the default latency) with the limit at bucket + DEFAULT_LATENCY_US of
    rate, at least one frame more, without the 8-frame MIN_DEFAULT_LIMIT_BYTES floor.

    For a TBF whose sender is local (egress mode `pod`): a full queue pushes back on the pod's
    own TCP instead of losing packets, so the floor kept for remote senders only adds delay."""
    queue_bytes = max(_ceil_div(params.rate_bytes_per_s * DEFAULT_LATENCY_US, _US_PER_S), MIN_QUEUE_BYTES)
    limit_bytes = min(params.limit_bytes, params.burst_bytes + queue_bytes)
    return TbfParams(params.rate_bytes_per_s, params.burst_bytes, limit_bytes)


@dataclass(frozen=True, slots=True)
class TbfKernelParams:
    """A TBF as the kernel reports it back (TCA_TBF_PARMS)."""

    rate_bytes_per_s: int
    buffer_ticks: int
    """The bucket as TBF stores it: transmit time of the burst at the rate, in psched ticks."""
    limit_bytes: int


def xmit_ticks(rate_bytes_per_s: int, size_bytes: int) -> int:
    """Transmit time of size_bytes at the rate in psched ticks, rounded as tc (and pyroute2,
    which writes podbw's qdiscs) round it: down to whole microseconds, then to whole ticks."""
    return int(int(1_000_000 * (float(size_bytes) / rate_bytes_per_s)) * TICKS_PER_US)


def expected_tbf(params: TbfParams) -> TbfKernelParams:
    """What the kernel reports back after podbw applied `params` (drift is any difference)."""
    return TbfKernelParams(
        rate_bytes_per_s=params.rate_bytes_per_s,
        buffer_ticks=xmit_ticks(params.rate_bytes_per_s, params.burst_bytes),
        limit_bytes=params.limit_bytes,
    )


def bucket_bytes(tbf: TbfKernelParams) -> int:
    """The largest packet the TBF lets through: its buffer time at its rate, in whole bytes, as
    the kernel computes it (psched_ns_t2l)."""
    return tbf.buffer_ticks * PSCHED_TICK_NS * tbf.rate_bytes_per_s // 1_000_000_000


def bucket_shrinks(current: TbfKernelParams, params: TbfParams) -> bool:
    """True when applying `params` over `current` lets through smaller packets than before.

    TBF keeps its queue across a change, and a queued packet larger than the new bucket never
    gathers enough tokens: it blocks the queue for good. Such a change must start from an empty
    queue. Compared exactly: a needless flush costs little, a missed one a wedged device."""
    return bucket_bytes(expected_tbf(params)) < bucket_bytes(current)
