#!/usr/bin/env python3
"""The README's pictures: what the Grafana dashboards show, drawn from a real Prometheus run.

No Grafana server runs here, so this builds the same stack as the e2e test (a lab node,
`podbw run`, /usr/bin/prometheus scraping it every second), drives about a minute of iperf3
traffic, then runs the dashboards' own panel queries (from dashboards/*.json, variables filled
in, `$__rate_interval` = 4 s as Grafana computes it for a 1 s scrape) through query_range and
plots them with matplotlib (Agg):

  pod-throughput.png   "podbw / Pod": shop/web's ingress mean and peak against its limit, which
                       is raised from 50 to 80 Mbit/s half-way through with --annotations-file;
  node-top-pods.png    "podbw / Node": the top pods by throughput, and their limit utilization.

It takes /tmp/podbw-bench.lock (flock(2), as `flock /tmp/podbw-bench.lock cmd` does) for the
whole run so it never overlaps another benchmark; don't wrap it in flock(1) too. Everything it
starts is torn down on exit. Needs root.

    .venv/bin/python bench/pictures.py --output docs/img/
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from agent.lab.spec import PodSpec  # noqa: E402
from agent.lab.traffic import iperf  # noqa: E402
from tests.e2e import panels as p  # noqa: E402
from tests.e2e.stack import CLUSTER_LABEL, NODE_LABEL, Stack, running_stack  # noqa: E402

LOCK_PATH = "/tmp/podbw-bench.lock"
INGRESS = "kubernetes.io/ingress-bandwidth"
EGRESS = "kubernetes.io/egress-bandwidth"
RATE_INTERVAL = "4s"
STEP_S = 1.0

PODS = (
    PodSpec("client", "shop"),
    PodSpec("client2", "shop"),
    PodSpec("web", "shop", {INGRESS: "50M"}),
    PodSpec("api", "shop", {INGRESS: "20M"}),
    PodSpec("batch", "jobs", {EGRESS: "30M"}),
    PodSpec("cache", "jobs"),
)
RAISED_WEB_LIMIT = "80M"


@dataclass(frozen=True)
class Flow:
    client: str
    server: str
    start_s: float
    seconds: float
    port: int = 5201


FLOWS = (
    Flow("client", "web", 2, 56),
    Flow("client2", "api", 10, 40),
    Flow("batch", "cache", 20, 25),
)
RAISE_LIMIT_AT_S = 32.0
TOTAL_S = 62.0


@contextlib.contextmanager
def bench_lock() -> Iterator[None]:
    with open(LOCK_PATH, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_overrides(path: str, web_limit: str) -> None:
    # Written whole and renamed: the agent never reads half a file.
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump({"shop/web": {INGRESS: web_limit}}, f)
    os.replace(tmp, path)


def drive_traffic(stack: Stack, overrides_path: str) -> tuple[float, float]:
    """Runs the flows on their schedule; returns (start, end) Unix times."""
    errors: list[BaseException] = []
    t0 = time.time()

    def run(flow: Flow) -> None:
        try:
            time.sleep(max(0.0, t0 + flow.start_s - time.time()))
            pods = stack.pods
            iperf(stack.lab, pods[flow.client], pods[flow.server], flow.seconds, port=flow.port)
        except BaseException as e:  # reported after the join
            errors.append(e)

    threads = [threading.Thread(target=run, args=(flow,), name=f"iperf3-{flow.server}") for flow in FLOWS]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, t0 + RAISE_LIMIT_AT_S - time.time()))
    write_overrides(overrides_path, RAISED_WEB_LIMIT)
    for thread in threads:
        thread.join(TOTAL_S + 60)
    time.sleep(max(0.0, t0 + TOTAL_S - time.time()))
    if errors:
        raise errors[0]
    return t0, time.time()


def panel_series(
    stack: Stack, dashboard: str, title: str, view: dict[str, str], start_s: float, end_s: float
) -> list[tuple[str, str, list[float], list[float]]]:
    """(refId, legend, times, values) of every series of a panel's queries, via query_range."""
    values = {**view, "__rate_interval": RATE_INTERVAL}
    out = []
    queries = [q for q in p.queries(p.load(dashboard)) if q.panel == title]
    if not queries:
        raise SystemExit(f"no panel {title!r} in {dashboard}")
    for query in queries:
        result = stack.prometheus.query_range(p.substitute(query.expr, values), start_s, end_s, STEP_S)
        if not result:
            raise SystemExit(f"{query.where}: no data")
        for series in result:
            legend = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: series["metric"].get(m.group(1), ""), query.legend)
            times = [float(t) - start_s for t, _ in series["values"]]
            out.append((query.ref, legend, times, [float(v) for _, v in series["values"]]))
    return out


def _style(ax: Any, ylabel: str) -> None:
    ax.set_ylabel(ylabel)
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_ylim(bottom=0)


def pod_picture(stack: Stack, start_s: float, end_s: float, path: str) -> None:
    view = {"cluster": CLUSTER_LABEL, "node": NODE_LABEL, "namespace": "shop", "pod": "web"}
    traffic = panel_series(stack, "pod.json", "Throughput vs limit (ingress)", view, start_s, end_s)
    used = panel_series(stack, "pod.json", "Limit utilization (ingress)", view, start_s, end_s)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    styles = {
        "A": {"color": "#1f77b4", "linewidth": 1.8},
        "B": {"color": "#ff7f0e", "linewidth": 1.2, "alpha": 0.9},
        "C": {"color": "#d62728", "linewidth": 2.0, "linestyle": "--"},
    }
    for ref, legend, times, values in traffic:
        top.plot(times, [v / 1e6 for v in values], label=legend, **styles[ref])
    top.axvline(RAISE_LIMIT_AT_S, color="#888888", linewidth=0.8, linestyle=":")
    top.annotate(
        f"limit raised live to {RAISED_WEB_LIMIT}bit/s\n(--annotations-file)",
        xy=(RAISE_LIMIT_AT_S, 4), xytext=(6, 0), textcoords="offset points", fontsize=8, color="#555555",
    )
    _style(top, "Mbit/s")
    top.legend(loc="upper left", frameon=False, ncol=3)
    top.set_title("podbw / Pod — shop/web, ingress: throughput against its limit", loc="left", fontsize=12)
    for _, legend, times, values in used:
        bottom.plot(times, [v * 100 for v in values], color="#2ca02c", linewidth=1.5, label="limit utilization")
    bottom.axhline(95, color="#d62728", linewidth=0.8, linestyle="--")
    _style(bottom, "% of limit")
    bottom.set_ylim(0, 110)
    bottom.set_xlabel("seconds")
    bottom.legend(loc="lower right", frameon=False)
    _finish(fig, path)


def node_picture(stack: Stack, start_s: float, end_s: float, path: str) -> None:
    view = {"cluster": CLUSTER_LABEL, "node": NODE_LABEL, "namespace": ".*", "pod": ".*"}
    top_pods = panel_series(stack, "node.json", "Top pods by throughput", view, start_s, end_s)
    used = panel_series(stack, "node.json", "Limit utilization", view, start_s, end_s)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1.6]})
    busy = sorted((s for s in top_pods if max(s[3]) > 1e6), key=lambda s: -max(s[3]))  # no ACK trickles
    # One colour per pod and direction in both plots (the legends use the same "ns/pod direction").
    colors = {legend: f"C{i}" for i, (_, legend, _, _) in enumerate(busy)}
    for _, legend, times, values in busy:
        top.plot(times, [v / 1e6 for v in values], label=legend, linewidth=1.5, color=colors[legend])
    _style(top, "Mbit/s")
    top.legend(loc="upper left", frameon=False, ncol=2, fontsize=9)
    top.set_title(f"podbw / Node — {NODE_LABEL}: top pods by throughput", loc="left", fontsize=12)
    for _, legend, times, values in sorted(used, key=lambda s: -max(s[3])):
        bottom.plot(times, [v * 100 for v in values], label=legend, linewidth=1.3, color=colors.get(legend, "grey"))
    bottom.axhline(95, color="#d62728", linewidth=0.8, linestyle="--")
    _style(bottom, "% of limit")
    bottom.set_ylim(0, 110)
    bottom.set_xlabel("seconds")
    bottom.legend(loc="lower right", frameon=False, ncol=2, fontsize=8)
    _finish(fig, path)


def _finish(fig: Any, path: str) -> None:
    fig.text(
        0.99, 0.005, "the dashboards' own queries, real Prometheus data (1 s scrape, lab node, iperf3)",
        ha="right", va="bottom", fontsize=7, color="#888888",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=os.path.join(REPO_ROOT, "docs", "img"), help="directory for the PNGs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/pictures.py needs root (network namespaces)", file=sys.stderr)
        return 1
    os.makedirs(args.output, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="podbw-pictures-")
    overrides = os.path.join(workdir, "annotations.yaml")
    write_overrides(overrides, "50M")
    try:
        with bench_lock(), running_stack(workdir, PODS, agent_args=("--annotations-file", overrides)) as stack:
            start_s, end_s = drive_traffic(stack, overrides)
            pod_picture(stack, start_s, end_s, os.path.join(args.output, "pod-throughput.png"))
            node_picture(stack, start_s, end_s, os.path.join(args.output, "node-top-pods.png"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
