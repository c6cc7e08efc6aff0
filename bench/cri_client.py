"""What the CRI client costs: RSS after its import and after a real pass over 250 sandboxes,
and the client's CPU per ListPodSandbox and per PodSandboxStatus.

    .venv/bin/python bench/cri_client.py [--pods 250] [--runs 5] [--calls 200]

Serves a state file of N pods with the lab's CRI server (a separate process, so its CPU and
memory are not counted) on a temporary socket; needs no root and no lab. Each run is a fresh
interpreter: RSS (/proc/self/statm) before and after `import agent.cri.client`, then after one
ListPodSandbox and a verbose PodSandboxStatus of every sandbox (what the agent does at start).
CPU is the client process's CPU time (time.process_time, gRPC's threads included) per call,
averaged over --calls calls; "decode" is that minus the same call with the response left as
raw bytes, i.e. what parsing the answer into the client's records costs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, sys, time

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 2**20


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / MIB


socket_path, calls = sys.argv[1], int(sys.argv[2])
result = {"rss_start": rss_mib()}
from agent.cri.client import SERVICE, CriClient  # noqa: E402

result["rss_import"] = rss_mib()
client = CriClient(socket_path, timeout_s=10.0)
ids = [s.id for s in client.list_ready_sandboxes()]
for sandbox_id in ids:
    client.sandbox_status(sandbox_id)
result["rss_pass"] = rss_mib()
result["sandboxes"] = len(ids)

channel = client._ready_channel()
raw_list = channel.unary_unary(SERVICE + "ListPodSandbox")
raw_status = channel.unary_unary(SERVICE + "PodSandboxStatus")
# Raw requests, hand-encoded so that the raw calls need no codec: filter{state{}} and
# {pod_sandbox_id, verbose=true}.
list_request = bytes([0x0A, 0x02, 0x12, 0x00])


def status_request(sandbox_id):
    encoded = sandbox_id.encode()
    return bytes([0x0A, len(encoded)]) + encoded + bytes([0x10, 0x01])


status_requests = [status_request(i) for i in ids]


def cpu_per_call(fn, n):
    fn(0)  # warm
    start = time.process_time()
    for i in range(n):
        fn(i)
    return (time.process_time() - start) / n


result["list_ms"] = 1e3 * cpu_per_call(lambda i: client.list_ready_sandboxes(), calls)
result["list_raw_ms"] = 1e3 * cpu_per_call(lambda i: raw_list(list_request, timeout=10), calls)
result["status_ms"] = 1e3 * cpu_per_call(lambda i: client.sandbox_status(ids[i % len(ids)]), calls)
result["status_raw_ms"] = 1e3 * cpu_per_call(
    lambda i: raw_status(status_requests[i % len(ids)], timeout=10), calls)
assert len(raw_list(list_request, timeout=10)) > 0
result["rss_end"] = rss_mib()
client.close()
print(json.dumps(result))
"""


def pod(index: int) -> dict:
    """A pod as a kubelet-made sandbox looks: bandwidth annotations, kubelet's labels."""
    uid = f"0b4a8f0e-{index:04x}-4c1e-9d6a-{index:012x}"
    name, namespace = f"web-{index}", f"team-{index % 10}"
    return {
        "sandbox_id": f"{index:064x}",
        "uid": uid,
        "namespace": namespace,
        "name": name,
        "attempt": 0,
        "netns_path": f"/var/run/netns/{uid}",
        "host_network": False,
        "ip": f"10.85.{index // 250}.{index % 250 + 2}",
        "annotations": {
            "kubernetes.io/ingress-bandwidth": "100M",
            "kubernetes.io/egress-bandwidth": "100M",
            "kubernetes.io/config.seen": "2026-01-01T00:00:00.000000000Z",
            "kubernetes.io/config.source": "api",
        },
        "labels": {
            "app": f"web-{index % 10}",
            "pod-template-hash": "5d8f7c9b4d",
            "io.kubernetes.pod.name": name,
            "io.kubernetes.pod.namespace": namespace,
            "io.kubernetes.pod.uid": uid,
        },
        "created_at_ns": 1_700_000_000_000_000_000 + index,
    }


def run_once(socket_path: str, calls: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, socket_path, str(calls)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=250)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200, help="calls per CPU figure")
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="podbw-cri-bench-", dir="/tmp"))
    state, socket_path = directory / "state.json", directory / "cri.sock"
    state.write_text(json.dumps({"name": "bench", "pods": [pod(i) for i in range(args.pods)]}))
    server = subprocess.Popen(
        [sys.executable, "-m", "agent.lab.cri_server", "--state", str(state), "--socket",
         str(socket_path), "--no-pod-events"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the lab CRI server did not start")
            time.sleep(0.05)
        runs = [run_once(str(socket_path), args.calls) for _ in range(args.runs)]
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)

    def column(key: str) -> str:
        values = [r[key] for r in runs]
        return f"{statistics.median(values):7.2f} ({min(values):.2f}-{max(values):.2f})"

    for r in runs:
        r["list_decode_ms"] = r["list_ms"] - r["list_raw_ms"]
        r["status_decode_ms"] = r["status_ms"] - r["status_raw_ms"]
    print(f"{args.runs} runs, {runs[0]['sandboxes']} sandboxes, {os.path.basename(sys.executable)} "
          f"{sys.version.split()[0]}; median (min-max)")
    for label, key in [
        ("RSS, interpreter (MiB)", "rss_start"),
        ("RSS after import agent.cri.client (MiB)", "rss_import"),
        ("RSS after List + 250 verbose Status (MiB)", "rss_pass"),
        (f"RSS after {args.calls * 4} more calls (MiB)", "rss_end"),
        ("CPU per ListPodSandbox (ms)", "list_ms"),
        ("  of which decode into records (ms)", "list_decode_ms"),
        ("CPU per PodSandboxStatus (ms)", "status_ms"),
        ("  of which decode into records (ms)", "status_decode_ms"),
    ]:
        print(f"{label:<44} {column(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
