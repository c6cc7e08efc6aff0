"""Soak: 300 pods created and deleted over ~5 minutes (1 new pod/s, ~20 alive at a time, mixed
annotations) while the agent runs and is scraped. Checks that nothing leaks and reports
reconcile latency. `--rate 5` is the burstier variant (300 pods in about a minute).

    .venv/bin/python bench/soak.py [--pods 300] [--rate 1] [--egress-mode ifb] [--output FILE]

Reconcile latency is the agent's own histogram podbw_reconcile_latency_seconds: from the moment
discovery saw the namespace (inotify on the pin) to the limit in the kernel. Run as root.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.lab.churn import ChurnedPod, run_churn  # noqa: E402
from agent.lab.node import LabNode  # noqa: E402
from agent.lab.spec import PodSpec  # noqa: E402
from tests.integration import tc_probe  # noqa: E402
from tests.integration.agent_process import AgentProcess, select  # noqa: E402
from tests.integration.conftest import new_lab_config  # noqa: E402


def podbw_ifbs() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "type", "ifb"], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip() for line in out.splitlines() if ": podbw" in line]


def pod_series(scrape) -> set:
    return {key for key in scrape if any(k == "pod" for k, _ in key[1])}


def histogram_quantile(buckets: dict[float, float], q: float) -> float:
    """Prometheus-style linear interpolation inside the bucket holding quantile q."""
    bounds = sorted(buckets)
    total = buckets[float("inf")]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / max(count - previous_count, 1e-9)
        previous_bound, previous_count = bound, count
    return bounds[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=300)
    parser.add_argument("--rate", type=float, default=1.0, help="pods created per second")
    parser.add_argument("--lifetime", type=float, nargs=2, default=(1.0, 40.0), metavar=("MIN", "MAX"))
    parser.add_argument("--egress-mode", default="ifb", choices=["pod", "ifb"])
    parser.add_argument("--output", default=str(ROOT / "bench/results/soak.md"))
    args = parser.parse_args()

    lab = LabNode(new_lab_config())
    agent = None
    stop_scraping = threading.Event()
    scrape_failures: list[str] = []
    scrapes = [0]
    try:
        lab.up([PodSpec("steady", "soak", {"kubernetes.io/ingress-bandwidth": "10M"})])
        agent = AgentProcess(lab, ["--egress-mode", args.egress_mode]).start()
        time.sleep(3)
        baseline = pod_series(agent.scrape())
        # Warm-up churn so one-off allocations do not count as growth.
        run_churn(lab, total_pods=20, pods_per_s=args.rate, lifetime_s=(0.5, 2.0), namespace="warm")
        time.sleep(3)
        rss_before = psutil.Process(agent.pid).memory_info().rss

        def scraper() -> None:
            while not stop_scraping.is_set():
                try:
                    agent.metrics_text()
                    scrapes[0] += 1
                except Exception as err:  # counted and reported, never fatal here
                    scrape_failures.append(repr(err))
                stop_scraping.wait(1.0)

        scraping = threading.Thread(target=scraper, daemon=True)
        scraping.start()
        unshaped: list[str] = []
        checked = [0]

        def check(churned: ChurnedPod) -> None:
            annotations = churned.pod.annotations
            if churned.lifetime_s < 2.0 or "kubernetes.io/ingress-bandwidth" not in annotations:
                return
            if "10Mbps" in annotations.values():
                return
            checked[0] += 1
            root = tc_probe.root(churned.pod.host_veth)
            if not root or root["handle"] != "5062:":
                unshaped.append(churned.pod.key)

        report = run_churn(lab, args.pods, args.rate, tuple(args.lifetime), before_delete=check)
        stop_scraping.set()
        scraping.join(5)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (agent.sample("podbw_pods") != 1 or podbw_ifbs()):
            time.sleep(0.5)
        time.sleep(2)
        scrape = agent.scrape()
        leftover_series = pod_series(scrape) - baseline
        rss_after = psutil.Process(agent.pid).memory_info().rss
        buckets = {
            float(dict(labels)["le"]): value
            for labels, value in select(scrape, "podbw_reconcile_latency_seconds_bucket").items()
        }
        p50 = histogram_quantile(buckets, 0.5)
        p99 = histogram_quantile(buckets, 0.99)
        within = buckets.get(0.5, 0) / max(buckets[float("inf")], 1)
        rows = [
            ("pods created / deleted", f"{report.created} in {report.duration_s:.0f} s ({report.created / report.duration_s:.1f}/s)"),
            ("pods checked shaped (lived > 2 s, ingress limit)", f"{checked[0] - len(unshaped)} / {checked[0]}"),
            ("podbw ifbs left", str(len(podbw_ifbs()))),
            ("series of gone pods left", str(len(leftover_series))),
            ("RSS before -> after churn", f"{rss_before / 1e6:.1f} MB -> {rss_after / 1e6:.1f} MB (growth {(rss_after - rss_before) / 1e6:+.1f} MB, target < 10)"),
            ("scrapes during churn (1/s)", f"{scrapes[0]} ok, {len(scrape_failures)} failed"),
            ("reconcile latency p50 (histogram)", f"{p50 * 1000:.0f} ms"),
            ("reconcile latency p99 (histogram)", f"{p99 * 1000:.0f} ms (target <= 500 ms)"),
            ("limits within 500 ms", f"{within:.1%} of {int(buckets[float('inf')])}"),
            ("tracebacks in agent log", str(agent.log_text().count("Traceback"))),
        ]
        text = "| soak | value |\n| --- | --- |\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"
        text = (
            f"Soak run {time.strftime('%Y-%m-%d %H:%M')} — {args.pods} pods at {args.rate}/s, lifetime "
            f"{args.lifetime[0]:g}-{args.lifetime[1]:g} s, egress mode {args.egress_mode}, 1 scrape/s\n\n{text}"
        )
        print(text)
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        ok = not unshaped and not podbw_ifbs() and not leftover_series and not scrape_failures
        return 0 if ok else 1
    finally:
        stop_scraping.set()
        if agent is not None:
            agent.close()
        lab.down()


if __name__ == "__main__":
    raise SystemExit(main())
