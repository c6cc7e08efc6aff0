"""How many series one pod costs, counted from a real scrape of lab pods, against the numbers
the README prints: the README's sentence fails this test when the exposition changes."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from agent.lab.state import LabPod
from tests.integration.agent_process import AgentProcess, Scrape
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.root

README = Path(__file__).resolve().parents[2] / "README.md"
BOTH_LIMITS = {"kubernetes.io/ingress-bandwidth": "20M", "kubernetes.io/egress-bandwidth": "10M"}
# README: "a pod with both limits and one interface costs **45** series, a pod without limits **23**
# (**11** with `--no-collector.unlimited-pods`)".
README_NUMBERS = re.compile(
    r"both limits and one interface costs \*\*(\d+)\*\* series, a pod without limits \*\*(\d+)\*\*\s+"
    r"\(\*\*(\d+)\*\* with `--no-collector.unlimited-pods`\)"
)


def series_of(scrape: Scrape, pod: LabPod) -> Counter[str]:
    """Series per metric name whose labels name this pod."""
    mine = {("namespace", pod.namespace), ("pod", pod.name)}
    return Counter(name for name, labels in scrape if mine <= labels)


def settled_scrape(agent: AgentProcess, limited: LabPod, free: LabPod) -> Scrape:
    """A scrape where both pods are reconciled and sampled, the limited one's qdiscs with them."""

    def ready() -> Scrape | None:
        scrape = agent.scrape()
        qdiscs = series_of(scrape, limited)["podbw_qdisc_bytes_total"]
        states = series_of(scrape, free)["podbw_shaping_state"]
        return scrape if qdiscs == 2 and states == 10 else None

    return wait_for(ready, 20.0, interval_s=0.1, what="both pods sampled with their qdiscs")


def start_pods(lab: LabNode) -> tuple[LabPod, LabPod]:
    limited, free = lab.up([PodSpec("limited", "series", BOTH_LIMITS), PodSpec("free", "series")])
    return limited, free


def test_series_per_pod_are_the_readme_numbers(lab_factory, agent_factory) -> None:
    lab = lab_factory()
    limited, free = start_pods(lab)
    agent = agent_factory(lab)
    scrape = settled_scrape(agent, limited, free)
    per_limited, per_free = series_of(scrape, limited), series_of(scrape, free)
    agent.stop()  # one agent at a time holds the node lock
    lean = agent_factory(lab, ["--no-collector.unlimited-pods"])
    lean_scrape = settled_scrape(lean, limited, free)
    per_free_lean = series_of(lean_scrape, free)
    assert series_of(lean_scrape, limited) == per_limited, "the switch leaves limited pods alone"

    # Where the limited pod's series come from: one interface, two directions.
    assert per_limited == {
        **{f"podbw_network_{way}_{what}_total": 1 for way in ("receive", "transmit")
           for what in ("bytes", "packets", "errors", "packets_dropped")},
        **{f"podbw_qdisc_{what}": 2 for what in ("bytes_total", "packets_total", "drops_total", "overlimits_total",
                                                  "requeues_total", "backlog_bytes", "backlog_packets")},
        **{f"podbw_limit_{what}": 2 for what in ("rate_bytes_per_second", "burst_bytes", "queue_bytes")},
        "podbw_limit_source": 2,
        "podbw_throughput_bytes_per_second": 2,
        "podbw_throughput_peak_bytes_per_second": 2,
        "podbw_shaping_state": 10,
        "podbw_pod_info": 1,
    }
    assert set(per_free_lean) == {"podbw_shaping_state", "podbw_pod_info"}

    readme = README_NUMBERS.search(README.read_text())
    assert readme, "README.md must state the series per pod (see README_NUMBERS)"
    stated = tuple(map(int, readme.groups()))
    measured = (sum(per_limited.values()), sum(per_free.values()), sum(per_free_lean.values()))
    assert measured == stated, f"README says {stated} series per pod, a real scrape has {measured}: update it"
