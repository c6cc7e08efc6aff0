"""Fixtures of the HTTP endpoint tests: a server on loopback, health answers, throwaway PKI."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client import CollectorRegistry

from agent.service.http import MetricsServer
from tests.pki import make_pki, openssl_available
from tests.unit.http_helpers import Checks, make_registry


@pytest.fixture
def checks() -> Checks:
    return Checks()


@pytest.fixture
def start_server(request: pytest.FixtureRequest, checks: Checks):
    """Call it to get a started MetricsServer on 127.0.0.1 (stopped after the test)."""

    def start(
        address: str = "127.0.0.1:0",
        registry: CollectorRegistry | None = None,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        client_cafile: str | None = None,
        **kwargs,
    ) -> MetricsServer:
        if certfile is not None:  # TLS (and client certificates) as a web config file says it
            tmp_path = request.getfixturevalue("tmp_path")
            kwargs["web_config_file"] = str(tls_web_config(tmp_path, certfile, keyfile, client_cafile))
        server = MetricsServer(
            address,
            registry or make_registry(),
            healthy=lambda: checks.healthy,
            ready=lambda: checks.ready,
            **kwargs,
        )
        server.start()
        request.addfinalizer(server.stop)
        return server

    return start


def tls_web_config(directory: Path, certfile: str, keyfile: str | None, client_cafile: str | None) -> Path:
    lines = ["tls_server_config:", f"  cert_file: {certfile}", f"  key_file: {keyfile or certfile}"]
    if client_cafile is not None:
        lines += [f"  client_ca_file: {client_cafile}", "  client_auth_type: RequireAndVerifyClientCert"]
    path = directory / "tls-web-config.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throwaway CA with server certificates for 127.0.0.1 and client certificates."""
    if not openssl_available():
        pytest.skip("openssl CLI not found: cannot make test certificates")
    yield make_pki(tmp_path_factory.mktemp("pki"))
