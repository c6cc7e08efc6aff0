"""The agent as a real process against a lab: start, wait for /readyz, scrape, stop.

Used by the integration tests (fixture `agent_factory` in conftest.py) and the benchmarks:

    agent = AgentProcess(lab, extra_args=["--sample-interval", "1"]).start()
    agent.sample("podbw_pods")                      # one value, or None when absent
    agent.scrape()                                  # {(name, frozenset(labels)): value}
    agent.stop()                                    # SIGTERM, returns the exit code

Output (stdout and stderr) goes to a temporary file, read with `log_text()`, so a chatty agent
can never block on a full pipe. The listen port is a free 127.0.0.1 port picked just before the
start; if another process grabs it first, the start is retried on a new port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping, Sequence

from prometheus_client.parser import text_string_to_metric_families

from agent.lab.node import LabNode

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 5.0
_PORT_ATTEMPTS = 3

SampleKey = tuple[str, frozenset[tuple[str, str]]]
Scrape = dict[SampleKey, float]


class AgentProcessError(Exception):
    """The agent process did not start, answer, or stop as expected (message includes its log)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel's pick; racy only in theory)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def parse_metrics(text: str) -> Scrape:
    """Every sample of a Prometheus text exposition, keyed by sample name and label set."""
    out: Scrape = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def select(scrape: Scrape, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """Samples called name whose labels include the given ones, keyed by their full label set."""
    wanted = set(labels.items())
    return {lbl: v for (n, lbl), v in scrape.items() if n == name and wanted <= lbl}


class AgentProcess:
    """`python -m agent run` against a lab's CRI socket and netns dir, on 127.0.0.1:<free port>."""

    def __init__(
        self,
        lab: LabNode,
        extra_args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        log_level: str = "info",
        wait_path: str = "/readyz",
    ) -> None:
        self.lab = lab
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.log_level = log_level
        self.wait_path = wait_path
        """start() returns once this answers 200: /readyz, or /healthz for an agent meant to start unready."""
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile(prefix="podbw-agent-", suffix=".log")

    # ---- life cycle -------------------------------------------------------------------------

    def argv(self, port: int) -> list[str]:
        return [
            sys.executable, "-m", "agent", "--log-level", self.log_level, "run",
            "--cri-endpoint", f"unix://{self.lab.config.socket}",
            "--netns-dir", self.lab.config.netns_dir,
            "--web.listen-address", f"127.0.0.1:{port}",
            *self.extra_args,
        ]

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> AgentProcess:
        """Start the process and wait until wait_path (/readyz) answers 200. Returns self."""
        if self.proc is not None:
            raise AgentProcessError("agent process already started")
        for _attempt in range(_PORT_ATTEMPTS):
            self.port = free_port()
            env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
            self.proc = subprocess.Popen(
                self.argv(self.port), cwd=REPO_ROOT, env=env,
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            )
            if self._wait_ready(ready_timeout_s):
                return self
            if "Address already in use" not in self.log_text():
                break
            self.proc.wait(STOP_TIMEOUT_S)
            self.proc = None
        code = self.proc.poll() if self.proc is not None else None
        self.kill()
        raise AgentProcessError(f"agent not ready (exit code {code}); log:\n{self.log_tail()}")

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                if self.get(self.wait_path, timeout_s=1.0)[0] == 200:
                    return True
            time.sleep(0.05)
        return False

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code
        (negative for a signal), None when it was never started. Idempotent."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL (no clean shutdown) and reap. Idempotent."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)

    def close(self) -> None:
        """Stop the process and drop its log file (the fixture finalizer calls this)."""
        try:
            self.stop()
        finally:
            self._log.close()

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise AgentProcessError("agent process not started")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- HTTP -------------------------------------------------------------------------------

    def get(self, path: str, timeout_s: float = HTTP_TIMEOUT_S) -> tuple[int, str]:
        """(status, body) of GET path; HTTP error statuses are returned, not raised."""
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout_s) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode("utf-8", "replace")

    def healthz(self) -> tuple[int, str]:
        return self.get("/healthz")

    def metrics_text(self) -> str:
        status, body = self.get("/metrics")
        if status != 200:
            raise AgentProcessError(f"/metrics answered {status}: {body[:200]}")
        return body

    def scrape(self) -> Scrape:
        return parse_metrics(self.metrics_text())

    def sample(self, name: str, *, scrape: Scrape | None = None, **labels: str) -> float | None:
        """The value of the one sample called name with exactly these labels (None if absent)."""
        scrape = self.scrape() if scrape is None else scrape
        return scrape.get((name, frozenset(labels.items())))

    def wait_for_sample(
        self, name: str, timeout_s: float = 10.0, *, predicate=None, **labels: str
    ) -> float:
        """Poll /metrics until the sample exists (and predicate(value) holds); its value."""
        deadline = time.monotonic() + timeout_s
        last: float | None = None
        while True:
            last = self.sample(name, **labels)
            if last is not None and (predicate is None or predicate(last)):
                return last
            if time.monotonic() > deadline:
                raise AgentProcessError(
                    f"no {name}{labels} (last value {last}) within {timeout_s:g} s;"
                    f" log:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    # ---- output -----------------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        self._log.flush()
        size = os.fstat(self._log.fileno()).st_size
        return os.pread(self._log.fileno(), size, 0).decode("utf-8", "replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> AgentProcess:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
