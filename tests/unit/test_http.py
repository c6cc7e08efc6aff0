"""MetricsServer on loopback: formats, gzip, health endpoints, TLS/mTLS, concurrent scrapes."""

from __future__ import annotations

import gzip
import http.client
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from agent.metrics.collector import PodbwCollector
from agent.model.health import HealthRecorder
from agent.service.http import MetricsServer, MetricsServerError, parse_address, render_body
from tests.unit.test_collector import SNAPSHOT_TWO_PODS, fixed_health

CONCURRENT_SCRAPES = 20


class Checks:
    """Mutable health/readiness answers the tests flip."""

    def __init__(self) -> None:
        self.healthy = (True, "")
        self.ready = (True, "")


def make_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    health = HealthRecorder()
    health.set_discovery_up("cri", True)
    registry.register(PodbwCollector(lambda: None, health.data, version="9.9.9"))
    return registry


@pytest.fixture
def checks() -> Checks:
    return Checks()


@pytest.fixture
def start_server(request: pytest.FixtureRequest, checks: Checks):
    def start(address: str = "127.0.0.1:0", registry: CollectorRegistry | None = None, **tls):
        server = MetricsServer(
            address,
            registry or make_registry(),
            healthy=lambda: checks.healthy,
            ready=lambda: checks.ready,
            **tls,
        )
        server.start()
        request.addfinalizer(server.stop)
        return server

    return start


def get(
    port: int, path: str, headers: dict[str, str] | None = None, host: str = "127.0.0.1",
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], bytes]:
    if context is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection(host, port, timeout=10)
    else:
        conn = http.client.HTTPSConnection(host, port, timeout=10, context=context)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def test_metrics_text_format(start_server) -> None:
    server = start_server()
    status, headers, body = get(server.port, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "content-encoding" not in headers
    text = body.decode()
    assert 'podbw_build_info{version="9.9.9"} 1.0' in text
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
    assert b'podbw_build_info{version="9.9.9"}' in gzip.decompress(body)


def test_metrics_name_filter(start_server) -> None:
    server = start_server()
    _, _, body = get(server.port, "/metrics?name[]=podbw_discovery_up")
    assert body.decode().splitlines() == [
        "# HELP podbw_discovery_up 1 when the pod discovery source works, 0 when it fails.",
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


class RendezvousCollector(Collector):
    """Every collect() waits until all scrapes are inside it: passes only if served in parallel."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=10)

    def collect(self):
        self.barrier.wait()
        yield GaugeMetricFamily("podbw_test_rendezvous", "test", value=1)

    def describe(self):
        return [GaugeMetricFamily("podbw_test_rendezvous", "test")]


def test_concurrent_scrapes_are_served_in_parallel(start_server) -> None:
    registry = CollectorRegistry()
    registry.register(RendezvousCollector(CONCURRENT_SCRAPES))
    server = start_server(registry=registry)
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
    assert all(status == 200 and b"podbw_test_rendezvous 1.0" in body for status, body in results)


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


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _issue(cwd: Path, name: str, subject: str, ext: str) -> None:
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=cwd)
    (cwd / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext",
             cwd=cwd)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throwaway CA with a server cert for 127.0.0.1 and a client cert, made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not found: cannot make test certificates")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=podbw test CA",
             "-days", "2", cwd=d)
    _issue(d, "server", "/CN=127.0.0.1",
           "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _issue(d, "client", "/CN=prometheus", "extendedKeyUsage=clientAuth\n")
    yield d


def client_context(pki: Path, with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if with_cert:
        context.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
    return context


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
    with pytest.raises(MetricsServerError, match="cannot load TLS files"):
        MetricsServer("127.0.0.1:0", make_registry(), lambda: checks.healthy,
                      lambda: checks.ready, certfile=str(tmp_path / "missing.crt"))
    with pytest.raises(MetricsServerError, match="without a certificate"):
        MetricsServer("127.0.0.1:0", make_registry(), lambda: checks.healthy,
                      lambda: checks.ready, client_cafile=str(tmp_path / "ca.crt"))


def test_scrapes_of_one_snapshot_share_one_render() -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import GaugeMetricFamily

    from agent.service.http import MetricsServer

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
    registry.register(PodbwCollector(lambda: SNAPSHOT_TWO_PODS, fixed_health, version="9.9.9"))
    encoder, _ = choose_encoder(accept)
    whole = encoder(registry)
    assert whole.count(b"# HELP ") > 20
    assert render_body(encoder, registry, compress=False) == whole
    assert gzip.decompress(render_body(encoder, registry, compress=True)) == whole
    restricted = registry.restricted_registry(["podbw_pods", "podbw_limit_rate_bytes_per_second"])
    assert render_body(encoder, restricted, compress=False) == encoder(restricted)
