"""MetricsServer on loopback: formats, gzip, health endpoints, TLS/mTLS, concurrent scrapes."""

from __future__ import annotations

import gzip
import re
import http.client
import socket
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.metrics.collector import PodbwCollector
from agent.service.http import MetricsServer, MetricsServerError, parse_address
from agent.service.http_negotiation import FORMATS, OPENMETRICS, TEXT, choose_format
from agent.service.metrics_body import render_body
from tests.unit.http_helpers import Checks, client_context, get, make_registry, wait_for
from tests.unit.test_collector import GOLDEN_COLLECTORS, SNAPSHOT_TWO_PODS, fixed_health

CONCURRENT_SCRAPES = 20


def test_metrics_text_format(start_server) -> None:
    server = start_server()
    status, headers, body = get(server.port, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "content-encoding" not in headers
    text = body.decode()
    assert re.search(r'^podbw_build_info\{[^}]*,version="9.9.9"\} 1.0$', text, re.MULTILINE)
    assert "# TYPE podbw_network_receive_bytes_total counter" in text


def test_metrics_openmetrics_when_accepted(start_server) -> None:
    server = start_server()
    status, headers, body = get(
        server.port, "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    text = body.decode()
    assert text.endswith("# EOF\n")
    assert "# TYPE podbw_build info" in text


def test_metrics_gzip_when_accepted(start_server) -> None:
    server = start_server()
    status, headers, body = get(server.port, "/metrics", {"Accept-Encoding": "gzip, deflate"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) == len(body)
    assert b',version="9.9.9"} 1.0' in gzip.decompress(body)


def test_metrics_name_filter(start_server) -> None:
    server = start_server()
    _, _, body = get(server.port, "/metrics?name[]=podbw_discovery_up")
    assert body.decode().splitlines() == [
        "# HELP podbw_discovery_up 1 when the pod discovery source works, 0 when it fails (cri, netns, or "
        "kubernetes: the API's pods and namespaces, without which CRI alone carries discovery).",
        "# TYPE podbw_discovery_up gauge",
        'podbw_discovery_up{source="cri"} 1.0',
    ]


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoints_ok_and_failing(start_server, checks: Checks, path: str) -> None:
    server = start_server()
    assert get(server.port, path)[::2] == (200, b"ok\n")
    if path == "/healthz":
        checks.healthy = (False, "sampler stalled for 12s")
    else:
        checks.ready = (False, "waiting for first CRI sync")
    status, _, body = get(server.port, path)
    assert status == 503
    assert body in (b"sampler stalled for 12s\n", b"waiting for first CRI sync\n")
    other = "/readyz" if path == "/healthz" else "/healthz"
    assert get(server.port, other)[0] == 200  # each endpoint asks its own check


def test_health_check_that_raises_is_503(request, checks: Checks) -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("lock poisoned")

    server = MetricsServer("127.0.0.1:0", make_registry(), healthy=broken, ready=broken)
    server.start()
    request.addfinalizer(server.stop)
    status, _, body = get(server.port, "/healthz")
    assert status == 503 and b"lock poisoned" in body


@pytest.mark.parametrize("path", ["/", "/metricsx", "/metrics/extra", "/favicon.ico"])
def test_unknown_paths_are_404(start_server, path: str) -> None:
    server = start_server()
    assert get(server.port, path)[0] == 404


def test_requests_are_not_logged_to_stderr(start_server, capfd: pytest.CaptureFixture) -> None:
    server = start_server()
    get(server.port, "/metrics")
    get(server.port, "/nope")
    assert capfd.readouterr().err == ""


class GatedCollector(Collector):
    """collect() blocks until the test opens the gate: a render that takes its time."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()

    def collect(self):
        self.entered.set()
        self.gate.wait(10)
        yield GaugeMetricFamily("podbw_test_gated", "test", value=1)

    def describe(self):
        return [GaugeMetricFamily("podbw_test_gated", "test")]


def test_a_slow_render_does_not_hold_up_health_checks(start_server) -> None:
    registry = CollectorRegistry()
    collector = GatedCollector()
    registry.register(collector)
    server = start_server(registry=registry)
    scrape: list[tuple[int, dict[str, str], bytes]] = []
    scraper = threading.Thread(target=lambda: scrape.append(get(server.port, "/metrics")))
    scraper.start()
    try:
        assert collector.entered.wait(10)
        assert get(server.port, "/healthz")[0] == 200  # while a worker is in the render
    finally:
        collector.gate.set()
        scraper.join(10)
    assert scrape and scrape[0][0] == 200 and b"podbw_test_gated 1.0" in scrape[0][2]


def test_concurrent_scrapes_are_all_answered(start_server) -> None:
    server = start_server()
    results: list[tuple[int, bytes]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def scrape() -> None:
        try:
            status, _, body = get(server.port, "/metrics")
            with lock:
                results.append((status, body))
        except BaseException as exc:  # reported by the assert below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=scrape) for _ in range(CONCURRENT_SCRAPES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(results) == CONCURRENT_SCRAPES
    assert all(status == 200 and b"podbw_build_info" in body for status, body in results)


def test_stop_closes_the_port(checks: Checks) -> None:
    server = MetricsServer("127.0.0.1:0", make_registry(), lambda: checks.healthy,
                           lambda: checks.ready)
    server.start()
    try:
        port = server.port
        assert port != 0
        assert get(port, "/healthz")[0] == 200
    finally:
        server.stop()
    with pytest.raises(ConnectionRefusedError):
        get(port, "/healthz")
    server.stop()  # idempotent


def test_port_in_use_is_a_clear_error(start_server, checks: Checks) -> None:
    first = start_server()
    second = MetricsServer(f"127.0.0.1:{first.port}", make_registry(), lambda: checks.healthy,
                           lambda: checks.ready)
    with pytest.raises(MetricsServerError, match="cannot listen on 127.0.0.1"):
        second.start()


def test_all_addresses_accepts_ipv4_loopback(start_server) -> None:
    server = start_server(":0")
    assert get(server.port, "/healthz")[0] == 200


def test_ipv6_loopback(start_server) -> None:
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            probe.bind(("::1", 0))
        finally:
            probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    server = start_server("[::1]:0")
    assert get(server.port, "/healthz", host="::1")[0] == 200


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:9090", ("127.0.0.1", 9090)), (":9090", ("", 9090)),
     ("[::1]:9090", ("::1", 9090)), ("localhost:0", ("localhost", 0))],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["9090", "::1:9090", "host:http", "host:70000"])
def test_parse_address_rejects(address: str) -> None:
    with pytest.raises(MetricsServerError, match="listen address"):
        parse_address(address)


# --- TLS -------------------------------------------------------------------------------------


def test_tls(start_server, pki: Path) -> None:
    server = start_server(certfile=str(pki / "server.crt"), keyfile=str(pki / "server.key"))
    assert server.tls
    status, _, body = get(server.port, "/metrics", context=client_context(pki, False))
    assert status == 200 and b"podbw_build_info" in body
    # Plain HTTP to the TLS port gets no metrics.
    with pytest.raises((OSError, http.client.HTTPException)):
        get(server.port, "/metrics")
    # The server survives the bad client.
    assert get(server.port, "/healthz", context=client_context(pki, False))[0] == 200


def test_mutual_tls_requires_a_client_certificate(start_server, pki: Path) -> None:
    server = start_server(
        certfile=str(pki / "server.crt"), keyfile=str(pki / "server.key"),
        client_cafile=str(pki / "ca.crt"),
    )
    status, _, body = get(server.port, "/metrics", context=client_context(pki, True))
    assert status == 200 and b"podbw_build_info" in body
    with pytest.raises((OSError, http.client.HTTPException)):
        get(server.port, "/metrics", context=client_context(pki, False))


def test_unusable_tls_files_are_a_clear_error(tmp_path: Path, checks: Checks) -> None:
    config = tmp_path / "web.yml"
    config.write_text(f"tls_server_config:\n  cert_file: {tmp_path / 'missing.crt'}\n  key_file: {tmp_path / 'k'}\n")
    with pytest.raises(MetricsServerError, match="cannot load cert_file .*missing.crt.*No such file"):
        MetricsServer("127.0.0.1:0", make_registry(), lambda: checks.healthy,
                      lambda: checks.ready, web_config_file=str(config))


def test_scrapes_of_one_snapshot_share_one_render() -> None:
    renders = []

    class Counting:
        def describe(self):
            return [GaugeMetricFamily("podbw_test_value", "a value")]

        def collect(self):
            renders.append(1)
            yield GaugeMetricFamily("podbw_test_value", "a value", value=len(renders))

    registry = CollectorRegistry()
    registry.register(Counting())
    key = [object()]
    server = MetricsServer("127.0.0.1:0", registry, lambda: (True, ""), lambda: (True, ""), render_key=lambda: key[0])
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        import urllib.request

        first = [urllib.request.urlopen(url, timeout=5).read() for _ in range(3)]
        assert len(set(first)) == 1 and len(renders) == 1
        key[0] = object()  # the next snapshot
        second = urllib.request.urlopen(url, timeout=5).read()
        assert second != first[0] and len(renders) == 2
        filtered = urllib.request.urlopen(url + "?name[]=podbw_test_value", timeout=5).read()
        assert b"podbw_test_value" in filtered and len(renders) == 3, "filtered scrapes bypass the cache"
    finally:
        server.stop()


@pytest.mark.parametrize(
    "accept",
    ["", "text/plain; version=0.0.4", "application/openmetrics-text; version=1.0.0", "application/openmetrics-text"],
)
def test_body_rendered_family_by_family_is_the_encoders_document(accept: str) -> None:
    registry = CollectorRegistry()
    # Without process_* and with a frozen clock: every render of the registry is the same.
    registry.register(PodbwCollector(
        lambda: SNAPSHOT_TWO_PODS, fixed_health, version="9.9.9", collectors=GOLDEN_COLLECTORS, clock=lambda: 0.0
    ))
    encoder = choose_format(accept).encoder
    whole = encoder(registry)
    assert whole.count(b"# HELP ") > 20
    assert render_body(encoder, registry, compress=False) == whole
    assert gzip.decompress(render_body(encoder, registry, compress=True)) == whole
    restricted = registry.restricted_registry(["podbw_pods", "podbw_limit_rate_bytes_per_second"])
    assert render_body(encoder, restricted, compress=False) == encoder(restricted)


# --- negotiation over HTTP (issue 17, item 12) -----------------------------------------------


@pytest.mark.parametrize(
    "accept_encoding",
    ["gzip;q=0", "gzip;q=0.0, identity", "*;q=0", "identity, *;q=0", "deflate", "br, gzip;q=0"],
)
def test_gzip_refused_by_its_q_value_is_not_sent(start_server, accept_encoding: str) -> None:
    server = start_server()
    status, headers, body = get(server.port, "/metrics", {"Accept-Encoding": accept_encoding})
    assert status == 200
    assert "content-encoding" not in headers
    assert body.startswith(b"# HELP ")


@pytest.mark.parametrize("accept_encoding", ["gzip;q=0.5", "*", "identity;q=0.5, *;q=0.1", "GZIP", "x-gzip"])
def test_gzip_accepted_by_its_q_value_is_sent(start_server, accept_encoding: str) -> None:
    server = start_server()
    status, headers, body = get(server.port, "/metrics", {"Accept-Encoding": accept_encoding})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert gzip.decompress(body).startswith(b"# HELP ")


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text; version=9.9.9",
        "application/openmetrics-text; version=1.0.0; escaping=values",
        "application/openmetrics-text;version=2.0.0;charset=latin1",
        "text/plain; version=1.0.0; escaping=dots",
        'text/plain; version=0.0.4; evil="x"',
        "*/*; version=7",
    ],
)
def test_content_type_is_one_podbw_chooses_never_the_clients(start_server, accept: str) -> None:
    server = start_server()
    status, headers, _ = get(server.port, "/metrics", {"Accept": accept})
    assert status == 200
    assert headers["content-type"] in {f.content_type for f in FORMATS}
    assert headers["content-type"] in (
        "text/plain; version=0.0.4; charset=utf-8",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )


def test_openmetrics_refused_by_its_q_value_is_not_sent(start_server) -> None:
    server = start_server()
    _, headers, body = get(server.port, "/metrics", {"Accept": "application/openmetrics-text;q=0, */*;q=0.1"})
    assert headers["content-type"] == TEXT.content_type
    assert not body.endswith(b"# EOF\n")
    _, headers, _ = get(server.port, "/metrics", {"Accept": "text/plain;q=0.2, application/openmetrics-text;q=0.3"})
    assert headers["content-type"] == OPENMETRICS.content_type


# --- HTTP itself -----------------------------------------------------------------------------


def test_head_sends_the_length_without_the_body(start_server) -> None:
    server = start_server()
    path = "/metrics?name[]=podbw_build_info"  # a family that does not change between requests
    _, get_headers, get_body = get(server.port, path)
    status, headers, body = get(server.port, path, method="HEAD")
    assert status == 200 and body == b""
    assert int(headers["content-length"]) == len(get_body)
    assert headers["content-type"] == get_headers["content-type"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_405(start_server, method: str) -> None:
    server = start_server()
    status, headers, _ = get(server.port, "/metrics", method=method)
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_keep_alive_serves_many_requests_on_one_connection(start_server) -> None:
    server = start_server()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for path in ("/healthz", "/metrics", "/readyz", "/nope", "/metrics"):
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            assert response.status in (200, 404)
            assert response.getheader("Connection") is None  # still open
        assert sample_of(server, "podbw_http_connections") == 1.0
    finally:
        conn.close()


def sample_of(server: MetricsServer, name: str, **labels: str) -> float | None:
    return server.registry.get_sample_value(name, labels)


def test_own_metrics_count_responses_by_code(start_server) -> None:
    server = start_server()
    get(server.port, "/healthz")
    get(server.port, "/nope")
    get(server.port, "/nope")
    assert sample_of(server, "podbw_http_responses_total", code="200") == 1.0
    assert sample_of(server, "podbw_http_responses_total", code="404") == 2.0
    assert sample_of(server, "podbw_http_connections_dropped_total", reason="header_timeout") == 0.0


def test_certificates_of_the_deprecated_flags_are_reloaded_too(start_server, pki: Path, tmp_path: Path) -> None:
    import os
    import shutil

    for name in ("tls.crt", "tls.key"):
        shutil.copy(pki / name.replace("tls", "server"), tmp_path / name)
    server = start_server(certfile=str(tmp_path / "tls.crt"), keyfile=str(tmp_path / "tls.key"))

    def subject() -> str:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            with client_context(pki, False).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return dict(item[0] for item in tls.getpeercert()["subject"])["commonName"]

    assert subject() == "127.0.0.1"
    for name in ("tls.crt", "tls.key"):  # renamed over the old ones, as a Secret update does
        shutil.copy(pki / name.replace("tls", "server2"), tmp_path / (name + ".new"))
        os.replace(tmp_path / (name + ".new"), tmp_path / name)
    wait_for(lambda: subject() == "127.0.0.1 rotated", what="the renewed certificate")
