"""The one pure function that turns a requested rate (and optional burst and latency) into
the TBF parameters podbw puts in the kernel. Exact integer arithmetic throughout."""

from __future__ import annotations

from agent.model.tbf_params import TbfParams

DEFAULT_BURST_TIME_US = 4000
"""Bucket = 4 ms of rate. Scales with the rate, since a fixed one-MTU bucket reached only 39% of
1 Gbit/s here (FACTS.md), yet lets at most 4 ms over the limit, unlike the CNI plugin's 1 s or
CRI-O's 4 GB bucket. The shaping benchmark (bench/) is what confirms the value."""
MIN_BURST_BYTES = 2 * 1514
"""Two full-size Ethernet frames: TBF drops any packet larger than the bucket, and with one frame
the bucket must refill completely between packets (79% of the rate at 100 Mbit/s here)."""
MIN_EXPLICIT_BURST_BYTES = 1514
"""An explicit burst may go down to one full frame, never below: smaller drops every full frame."""
DEFAULT_LATENCY_US = 2000
"""Queue limit = 2 ms of rate beyond the bucket: TCP keeps the link busy while RTT stays low."""
MIN_QUEUE_BYTES = 1514
"""The queue beyond the bucket holds at least one full frame, even at tiny rates or latencies."""
MAX_RATE_BYTES_PER_S = 2**32 - 1
"""Kernel TBF's 32-bit rate field: podbw does not send TCA_TBF_RATE64, so ~34.36 Gbit/s is the top."""
MAX_BURST_BYTES = 2**32 - 1
"""The burst is handed over as a u32 byte count (tc's `burst`)."""
MAX_BUCKET_TIME_US = 60_000_000
"""TBF stores the bucket as a u32 count of psched ticks (64 ns each: at most ~275 s); 60 s stays
well inside it, and no sane bucket is anywhere near that long."""
MAX_LIMIT_BYTES = 2**32 - 1
"""TBF's queue limit is a u32 of bytes."""

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

    burst: `burst_bits` if given, else 4 ms of rate, at least two full frames.
    limit: burst + `latency_us` of rate (default 2 ms), at least burst + one full frame.
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
            _ceil_div(rate_bytes_per_s * DEFAULT_BURST_TIME_US, _US_PER_S), MIN_BURST_BYTES
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
    if limit_bytes > MAX_LIMIT_BYTES:
        raise TbfError(
            f"queue limit {limit_bytes} bytes (burst {burst_bytes} + {latency_us} us at "
            f"{rate_bytes_per_s} bytes/s) is above the kernel's u32 limit ({MAX_LIMIT_BYTES} bytes)",
            "latency" if latency_given else ("burst" if burst_bits is not None else "rate"),
        )
    return TbfParams(
        rate_bytes_per_s=rate_bytes_per_s, burst_bytes=burst_bytes, limit_bytes=limit_bytes
    )


def latency_us_of(params: TbfParams) -> int:
    """How long the queue beyond the bucket takes to drain at the rate, in us rounded up: the
    `latency` form of `limit_bytes`, for interfaces that take latency instead of a limit."""
    if params.rate_bytes_per_s <= 0:
        raise TbfError(f"rate must be positive, got {params.rate_bytes_per_s}", "rate")
    queue_bytes = max(params.limit_bytes - params.burst_bytes, 0)
    return _ceil_div(queue_bytes * _US_PER_S, params.rate_bytes_per_s)
