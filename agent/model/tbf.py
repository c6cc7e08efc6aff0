"""The one pure function that turns a requested rate (and optional burst and latency) into
the TBF parameters podbw puts in the kernel. Exact integer arithmetic throughout."""

from __future__ import annotations

from agent.model.tbf_params import TbfParams

FRAME_BYTES = 1514
"""A full-size Ethernet frame at MTU 1500, as TBF counts it (headers included)."""
SEGMENT_PAYLOAD_BYTES = 1448
"""TCP payload of that frame (IPv4 + TCP with timestamps): what a GSO packet carries per frame."""

# Defaults tuned with bench/shaping.py on the lab (2 cores, Linux 6.18, veth; iperf3 TCP with 1
# and 8 flows, both directions, 10M..5G, BBR as this machine's default and CUBIC as a cross-check;
# final numbers in bench/results/shaping.md). TBF's queue is one FIFO and this kernel has no
# fq_codel, so the queue limit is both the RTT every packet behind the data sees and what keeps
# TCP from losing packets: the defaults sit where BBR still reaches the rate.
DEFAULT_BURST_TIME_US = 3000
"""Bucket = 3 ms of rate. Scales with the rate, since a fixed one-MTU bucket reached only 39% of
1 Gbit/s here (FACTS.md; the book's TBF in the benchmark: 0.52..0.61), yet lets at most 3 ms over
the limit, unlike the CNI plugin's 1 s or CRI-O's 4 GB bucket. At 50M/100M/1G a 3 ms bucket
(+1.5 ms queue) gave 0.938..0.956 of the rate where 1 and 2 ms buckets (+3 and +2 ms queue, same
limit) gave 0.926..0.948."""
MAX_DEFAULT_BURST_BYTES = 4 * 65536
"""...but at most 256 KiB (from ~700 Mbit/s up): four of the largest GSO packets, plenty for TBF's
dequeue timer, while a longer bucket only lengthens the queue (the limit includes the bucket).
At 1 Gbit/s with 8 flows, 3 ms (375 KB) gave ping RTT p99 4.5..6.2 ms, 256 KiB 4.0..4.4 ms at the
same goodput (0.954..0.956); at 5 Gbit/s goodput stayed 0.942..0.955."""
MIN_DEFAULT_BURST_TIME_US = 1000
"""...and at least 1 ms of rate (from ~2.1 Gbit/s up): when the dequeue timer fires late, the
bucket is what carries the rate over the gap. At 5 Gbit/s, 256 KiB (0.42 ms) gave pod egress
0.947..0.952 in one series and 0.895..0.932 in the full run, 1 ms (625 KB) 0.955..0.956."""
MIN_BURST_BYTES = 2 * FRAME_BYTES
"""Two full-size Ethernet frames: TBF drops any packet larger than the bucket, and with one frame
the bucket must refill completely between packets (79% of the rate at 100 Mbit/s here)."""
MIN_EXPLICIT_BURST_BYTES = FRAME_BYTES
"""An explicit burst may go down to one full frame, never below: smaller drops every full frame."""
DEFAULT_LATENCY_US = 1500
"""Queue limit = bucket + 1.5 ms of rate (tc's `latency`), 4.5 ms in all: a FIFO's limit is the
delay packets behind the data may see, measured ping RTT p99 4.2..4.9 ms at 50M..1G (bucket +
2 ms: 4.7..5.0 ms, + 2.5 ms: 5.2..5.5 ms). Not less: BBR ignores loss and keeps ~3 TSO bursts
(1 ms of rate each) in flight; with bucket + 1 ms a single BBR flow into the pod at 50 Mbit/s hit
~20% loss and a retransmission timeout (0.887 of the rate) in 2 of 5 runs; with + 1.5 ms in 1 of
8 (0.90), never at 4.5 ms with CUBIC (0.944..0.956, few retransmits)."""
MIN_QUEUE_BYTES = FRAME_BYTES
"""The queue beyond the bucket holds at least one full frame, even at tiny rates or latencies."""
MIN_DEFAULT_LIMIT_BYTES = 8 * FRAME_BYTES
"""With the default latency the limit holds at least 8 full frames, whatever the rate: BBR keeps
about 3 two-segment TSO bursts plus probing (~8 segments) in flight even when the BDP is tiny.
At 10 Mbit/s into the pod (host veth) a 5-frame limit gave BBR 0.77 of the rate, 6 frames 0.91,
7 and 8 frames 0.94..0.95 (CUBIC: 0.95 with 5). It costs RTT below ~21.5 Mbit/s (8 frames =
9.7 ms at 10 Mbit/s: ping RTT p99 8..10 ms), where a FIFO cannot give both. A TBF in front of
the pod's own TCP (egress mode `pod`) does without it: see without_limit_floor."""
GSO_LEGACY_MAX_BYTES = 65536
"""The kernel's default gso_max_size (GSO_LEGACY_MAX_SIZE) for a veth."""
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


def latency_us_of(params: TbfParams) -> int:
    """How long the queue beyond the bucket takes to drain at the rate, in us rounded up: the
    `latency` form of `limit_bytes`, for interfaces that take latency instead of a limit."""
    if params.rate_bytes_per_s <= 0:
        raise TbfError(f"rate must be positive, got {params.rate_bytes_per_s}", "rate")
    queue_bytes = max(params.limit_bytes - params.burst_bytes, 0)
    return _ceil_div(queue_bytes * _US_PER_S, params.rate_bytes_per_s)


def gso_max_bytes(params: TbfParams) -> int | None:
    """The gso_max_size for the pod's eth0 under an egress bucket of `params`, or None when any
    GSO packet of the kernel's default size already fits the bucket.

    TBF splits a GSO packet larger than its bucket into frames and enqueues them one by one, so
    a 64 KB packet meeting a smaller queue loses its tail: at 50 Mbit/s (bucket 25 KB, limit
    37.5 KB) pod egress reached 0.86..0.91 of the rate with 4,000..13,000 retransmits and 0.2 s
    stalls. Capped so that a GSO packet of full frames never exceeds the bucket (payload per
    frame 1448 of 1514 bytes; the kernel also reserves room for headers, which only helps), the
    pod's TCP sees its own qdisc push back instead of losses: 0.95 with 0 retransmits at 10M
    and 50M. At rates whose bucket holds 64 KB (3 ms of rate from ~183 Mbit/s) nothing changes.
    """
    if params.burst_bytes * SEGMENT_PAYLOAD_BYTES // FRAME_BYTES >= GSO_LEGACY_MAX_BYTES:
        return None
    return max(params.burst_bytes * SEGMENT_PAYLOAD_BYTES // FRAME_BYTES, SEGMENT_PAYLOAD_BYTES)


def without_limit_floor(params: TbfParams) -> TbfParams:
    """`params` (made with the default latency) with the limit at bucket + DEFAULT_LATENCY_US of
    rate, at least one frame more, without the 8-frame MIN_DEFAULT_LIMIT_BYTES floor.

    For a TBF whose sender is local: egress mode `pod`, where a full queue pushes back on the
    pod's own TCP (with gso_max_bytes) instead of losing packets, so the floor that keeps remote
    BBR senders at the rate only adds delay. At 10 Mbit/s pod egress, bucket + 1.5 ms (5625 B)
    gave 0.949..0.952 of the rate, no retransmits, ping RTT p99 2.4..3.5 ms and no lost pings;
    the 8-frame limit 5.4..5.7 ms and up to 70 of 185 pings lost (8 flows)."""
    queue_bytes = max(_ceil_div(params.rate_bytes_per_s * DEFAULT_LATENCY_US, _US_PER_S), MIN_QUEUE_BYTES)
    limit_bytes = min(params.limit_bytes, params.burst_bytes + queue_bytes)
    return TbfParams(params.rate_bytes_per_s, params.burst_bytes, limit_bytes)
