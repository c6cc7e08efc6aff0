"""Accept and Accept-Encoding with q-values (issue 17, item 12): table-driven."""

from __future__ import annotations

import pytest

from agent.service.http_negotiation import OPENMETRICS, TEXT, choose_format, gzip_accepted

PROMETHEUS_3_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("", TEXT),
        ("*/*", TEXT),
        ("text/plain", TEXT),
        ("text/html", TEXT),  # neither offered: the text format rather than a 406
        ("application/openmetrics-text", OPENMETRICS),
        ("application/openmetrics-text; version=1.0.0", OPENMETRICS),
        ("Application/OpenMetrics-Text", OPENMETRICS),
        ("application/*", OPENMETRICS),
        (PROMETHEUS_3_ACCEPT, OPENMETRICS),
        ("application/openmetrics-text;q=0", TEXT),
        ("application/openmetrics-text;q=0, */*", TEXT),
        ("application/openmetrics-text;q=0.0, */*;q=0.1", TEXT),
        ("text/plain;q=0.9, application/openmetrics-text;q=0.5", TEXT),
        ("text/plain;q=0.2, application/openmetrics-text;q=0.3", OPENMETRICS),
        ("application/openmetrics-text, text/plain", TEXT),  # a tie: the classic format
        ("text/plain;q=0, */*", OPENMETRICS),  # text refused, anything else welcome
        ("text/*;q=0.1, application/openmetrics-text;q=0.05", TEXT),
        ("application/openmetrics-text;q=bogus, text/plain;q=0.1", TEXT),  # malformed q: element ignored
        ("application/openmetrics-text;q=2", TEXT),  # out of range: ignored
        ("*/*;q=0.1, text/plain;q=0", OPENMETRICS),
    ],
)
def test_choose_format(accept: str, expected) -> None:
    assert choose_format(accept) is expected


@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        ("", False),
        ("gzip", True),
        ("GZip", True),
        ("x-gzip", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=0.001", True),
        ("gzip;q=0, *", False),  # named beats the wildcard
        ("*", True),
        ("*;q=0", False),
        ("*;q=0, gzip;q=0.5", True),
        ("deflate, br", False),
        ("identity", False),
        ("gzip;q=x", False),  # malformed: ignored
        ("gzip, deflate, br, zstd", True),
        ("gzip;q=0, gzip;q=1", True),  # repeated: the higher counts
    ],
)
def test_gzip_accepted(accept_encoding: str, expected: bool) -> None:
    assert gzip_accepted(accept_encoding) is expected
