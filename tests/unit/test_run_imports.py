"""`podbw run` talks CRI without the protobuf library (agent/cri/wire.py), which would cost it
megabytes of RSS. A fresh interpreter imports what `podbw run` imports, in the same order as
bench/rss_imports.py, and makes every CRI call against the lab's server, which runs in a
process of its own (it uses runtime_pb2, as the lab may)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
POD = {"sandbox_id": "a" * 64, "uid": "u1", "namespace": "ns", "name": "web", "attempt": 0,
       "netns_path": "/var/run/netns/x", "host_network": False, "ip": "10.85.0.5",
       "host_veth": "vethx", "annotations": {"k": "v"}, "labels": {}, "created_at_ns": 1}

RUN_AND_CALL = """
import sys
from agent.cli.main import build_parser
build_parser()
from agent.netlink import pyroute2_lean
pyroute2_lean.install()
import agent.service.agent
import gzip
from agent.cri.client import CriClient

with CriClient(sys.argv[1], timeout_s=5.0) as client:
    assert client.version().runtime_name == "cri-o"
    (summary,) = client.list_ready_sandboxes()
    details = client.sandbox_status(summary.id)
    assert (details.netns_path, dict(details.annotations)) == ("/var/run/netns/x", {"k": "v"})
    assert list(client.events(timeout_s=5.0)) == []  # the server runs without pod events
print(sorted({m for m in sys.modules if m == "google.protobuf" or m.startswith("google.protobuf.")}))
import agent.cri.runtime_pb2  # the check sees protobuf when it is there
print("google.protobuf" in sys.modules)
"""


@pytest.fixture
def lab_socket() -> Iterator[str]:
    directory = Path(tempfile.mkdtemp(prefix="podbw-imports-", dir="/tmp"))
    state, socket_path = directory / "state.json", directory / "crio.sock"
    state.write_text(json.dumps({"name": "imports", "pods": [POD]}), encoding="utf-8")
    log = directory / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "agent.lab.cri_server", "--state", str(state), "--socket", str(socket_path)],
            cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while not socket_path.exists():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield str(socket_path)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(directory, ignore_errors=True)


def test_podbw_run_makes_its_cri_calls_without_protobuf(lab_socket: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(RUN_AND_CALL), lab_socket],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "True"]
