"""One exporter-toolkit web config file (issue 15, item 1): TLS with required client
certificates and basic auth. curl and a real Prometheus scrape the agent with it; a wrong
password gets 401; a client without a certificate, or with one from another CA, is refused;
certificates replaced on disk, as a Kubernetes Secret update does, serve new connections
without a restart."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import bcrypt
import pytest

from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from tests.e2e.stack import JOB, PROMETHEUS_BIN, PrometheusProcess, wait_until
from tests.integration.agent_process import AgentProcess, parse_metrics
from tests.integration.conftest import new_lab_config
from tests.pki import make_pki, openssl_available

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

USER = "prometheus"
PASSWORD = "scrape-me, please"


class TlsAgentProcess(AgentProcess):
    """The agent served over HTTPS with basic auth: the test's own requests carry both."""

    def __init__(self, lab: LabNode, extra_args: list[str], pki: Path) -> None:
        super().__init__(lab, extra_args)
        self.context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.context.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def get(self, path: str, timeout_s: float = 5.0) -> tuple[int, str]:
        request = urllib.request.Request(self.base_url + path)
        request.add_unredirected_header("Authorization", basic_auth_header(PASSWORD))
        try:
            with urllib.request.urlopen(request, timeout=timeout_s, context=self.context) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode("utf-8", "replace")


def basic_auth_header(password: str) -> str:
    return "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()


@dataclass
class TlsPrometheus(PrometheusProcess):
    """Prometheus scraping over HTTPS with a client certificate and basic auth."""

    pki: Path = Path()

    def config(self) -> dict[str, Any]:
        config = super().config()
        job = config["scrape_configs"][0]
        job["scheme"] = "https"
        job["tls_config"] = {
            "ca_file": str(self.pki / "ca.crt"),
            "cert_file": str(self.pki / "client.crt"),
            "key_file": str(self.pki / "client.key"),
        }
        job["basic_auth"] = {"username": USER, "password": PASSWORD}
        return config


@dataclass
class Stack:
    agent: TlsAgentProcess
    prometheus: TlsPrometheus
    pki: Path
    web_dir: Path


def replace_file(path: Path, source: Path) -> None:
    """A new file renamed over the old one, as kubelet updates a mounted Secret."""
    tmp = path.with_name(path.name + ".new")
    shutil.copy(source, tmp)
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if shutil.which(PROMETHEUS_BIN) is None:
        pytest.skip(f"{PROMETHEUS_BIN} not installed (Debian package prometheus)")
    if not openssl_available() or shutil.which("curl") is None:
        pytest.skip("needs the openssl and curl CLIs")
    workdir = Path(tempfile.mkdtemp(prefix="podbw-webconfig-"))
    lab = LabNode(new_lab_config())
    agent = prometheus = None
    try:
        (workdir / "pki").mkdir()
        pki = make_pki(workdir / "pki")
        web_dir = workdir / "web"
        web_dir.mkdir()
        replace_file(web_dir / "tls.crt", pki / "server.crt")
        replace_file(web_dir / "tls.key", pki / "server.key")
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
        (web_dir / "web-config.yml").write_text(
            "tls_server_config:\n"
            "  cert_file: tls.crt\n"
            "  key_file: tls.key\n"
            f"  client_ca_file: {pki / 'ca.crt'}\n"
            "  client_auth_type: RequireAndVerifyClientCert\n"
            "  min_version: TLS12\n"
            "http_server_config:\n"
            "  headers:\n"
            "    X-Content-Type-Options: nosniff\n"
            f"basic_auth_users:\n  {USER}: {hashed}\n"
        )
        lab.up([PodSpec("web", "shop", {"kubernetes.io/ingress-bandwidth": "20M"})])
        agent = TlsAgentProcess(
            lab, ["--sample-interval", "1", "--web.config.file", str(web_dir / "web-config.yml")], pki
        ).start()
        prometheus = TlsPrometheus(str(workdir), (f"127.0.0.1:{agent.port}",), pki=pki)
        prometheus.start()
        yield Stack(agent, prometheus, pki, web_dir)
    finally:
        for proc in (prometheus, agent):
            if proc is not None:
                proc.close() if proc is agent else proc.stop()
        lab.down()
        shutil.rmtree(workdir, ignore_errors=True)


def curl(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    url = f"https://127.0.0.1:{stack.agent.port}/metrics"
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--cacert", str(stack.pki / "ca.crt"), "-o", "/dev/null",
         "-w", "%{http_code}", *args, url],
        capture_output=True, text=True, timeout=30,
    )


def client_cert(stack: Stack, name: str = "client") -> list[str]:
    return ["--cert", str(stack.pki / f"{name}.crt"), "--key", str(stack.pki / f"{name}.key")]


def test_prometheus_scrapes_over_tls_with_a_client_certificate_and_basic_auth(stack: Stack) -> None:
    def scraped() -> bool:
        pods = {s["metric"].get("pod") for s in stack.prometheus.query(f'podbw_pod_info{{job="{JOB}"}}')}
        return stack.prometheus.targets_up() and "web" in pods

    wait_until(scraped, 30, "Prometheus to scrape shop/web over HTTPS", interval_s=0.25)


def test_curl_with_certificate_and_password_gets_metrics(stack: Stack) -> None:
    done = curl(stack, *client_cert(stack), "-u", f"{USER}:{PASSWORD}")
    assert (done.returncode, done.stdout) == (0, "200"), done.stderr


def test_a_wrong_password_gets_401(stack: Stack) -> None:
    for credentials in (f"{USER}:wrong", f"mallory:{PASSWORD}"):
        done = curl(stack, *client_cert(stack), "-u", credentials)
        assert (done.returncode, done.stdout) == (0, "401"), done.stderr
    done = curl(stack, *client_cert(stack))
    assert done.stdout == "401"


@pytest.mark.parametrize("cert", [None, "stranger"])
def test_a_client_without_a_certificate_of_the_ca_is_refused(stack: Stack, cert: str | None) -> None:
    args = client_cert(stack, cert) if cert else []
    done = curl(stack, *args, "-u", f"{USER}:{PASSWORD}")
    assert done.returncode != 0 and done.stdout == "000", (done.returncode, done.stdout, done.stderr)


def served_subject(stack: Stack) -> str:
    context = ssl.create_default_context(cafile=str(stack.pki / "ca.crt"))
    context.load_cert_chain(str(stack.pki / "client.crt"), str(stack.pki / "client.key"))
    with socket.create_connection(("127.0.0.1", stack.agent.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            subject = dict(item[0] for item in tls.getpeercert()["subject"])  # type: ignore[index]
            return str(subject["commonName"])


def test_replaced_certificates_take_effect_without_a_restart(stack: Stack) -> None:
    pid = stack.agent.pid
    assert served_subject(stack) == "127.0.0.1"
    replace_file(stack.web_dir / "tls.crt", stack.pki / "server2.crt")
    replace_file(stack.web_dir / "tls.key", stack.pki / "server2.key")
    wait_until(lambda: served_subject(stack) == "127.0.0.1 rotated", 10, "the new certificate to be served")
    assert stack.agent.pid == pid and stack.agent.running
    # Prometheus keeps scraping (same CA), and the agent says the reload went fine.
    after_s = time.time()
    wait_until(
        lambda: any(float(s["value"][1]) > after_s
                    for s in stack.prometheus.query(f'timestamp(up{{job="{JOB}"}} == 1)')),
        30, "a successful scrape after the rotation", interval_s=0.25,
    )
    scrape = parse_metrics(stack.agent.metrics_text())
    assert scrape[("podbw_web_config_last_reload_successful", frozenset())] == 1.0
    assert scrape[("podbw_web_config_reload_errors_total", frozenset())] == 0.0
    assert "web config reloaded" in stack.agent.log_text()
