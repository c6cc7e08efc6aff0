"""The /metrics body: a registry in an exposition format, optionally gzip'ed, a family at a time."""

from __future__ import annotations

import zlib
from typing import Iterable, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from agent.service.http_negotiation import Encoder

GZIP_LEVEL = 6
"""zlib's default: nearly the size of level 9 at a fraction of the CPU per scrape."""
GZIP_WBITS = 16 + zlib.MAX_WBITS
"""zlib's window bits for a gzip container (what gzip.compress writes)."""


class _Families:
    """A collector of the given families only: lets an exposition encoder format part of a
    registry."""

    def __init__(self, *families: Metric) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def encode_by_family(encoder: Encoder, registry: Collector) -> Iterator[bytes]:
    """`encoder(registry)` in pieces, one metric family each (their concatenation is the same
    document). prometheus_client's encoders hold every line of the response as a str, then the
    joined str, then its bytes: ~3 MiB at 250 pods, which a render would leave behind as heap
    fragmentation; a family at a time holds one family's lines at most."""
    trailer = encoder(_Families())  # what the format ends every document with (OpenMetrics: # EOF)
    for family in registry.collect():
        piece = encoder(_Families(family))
        yield piece[: len(piece) - len(trailer)] if trailer else piece
    if trailer:
        yield trailer


def render_body(encoder: Encoder, registry: Collector, compress: bool) -> bytes:
    """The /metrics body; gzip'ed piece by piece when `compress`, so the uncompressed text of
    the whole response never exists at once."""
    if not compress:
        return b"".join(encode_by_family(encoder, registry))
    gzipper = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
    parts = [gzipper.compress(piece) for piece in encode_by_family(encoder, registry)]
    parts.append(gzipper.flush())
    return b"".join(parts)
