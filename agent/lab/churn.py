"""Pod churn on a lab: create pods at a steady rate, each living a random while, then delete.

The soak benchmark and the churn test drive it while an agent runs; a callback sees every pod
just before it is deleted, so the caller can check it was shaped while it lived.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from agent.lab.state import LabPod

ANNOTATION_MIX: tuple[dict[str, str], ...] = (
    {},
    {"kubernetes.io/ingress-bandwidth": "10M"},
    {"kubernetes.io/egress-bandwidth": "20M"},
    {"kubernetes.io/ingress-bandwidth": "50M", "kubernetes.io/egress-bandwidth": "5M"},
    {"kubernetes.io/ingress-bandwidth": "10Mbps"},  # invalid on purpose
)
"""What churned pods carry, in turn: none, ingress, egress, both, invalid."""


@dataclass
class ChurnedPod:
    pod: LabPod
    created_at_s: float
    """Monotonic time when the pod was created (its namespace pinned)."""
    lifetime_s: float
    deleted_at_s: float = 0.0


@dataclass
class ChurnReport:
    pods: list[ChurnedPod] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def created(self) -> int:
        return len(self.pods)


def run_churn(
    lab: LabNode,
    total_pods: int,
    pods_per_s: float,
    lifetime_s: tuple[float, float] = (1.0, 8.0),
    mix: Sequence[dict[str, str]] = ANNOTATION_MIX,
    namespace: str = "churn",
    before_delete: Callable[[ChurnedPod], None] | None = None,
    seed: int = 1,
) -> ChurnReport:
    """Create `total_pods` pods at `pods_per_s`, each deleted after a random lifetime."""
    rng = random.Random(seed)
    report = ChurnReport()
    started = time.monotonic()
    alive: list[tuple[float, int, ChurnedPod]] = []
    tiebreak = itertools.count()
    next_create_s = started
    created = 0
    while created < total_pods or alive:
        now = time.monotonic()
        if alive and alive[0][0] <= now:
            _, _, victim = heapq.heappop(alive)
            if before_delete is not None:
                before_delete(victim)
            lab.delete(victim.pod.sandbox_id)
            victim.deleted_at_s = time.monotonic()
            continue
        if created < total_pods and next_create_s <= now:
            annotations = dict(mix[created % len(mix)])
            created_at = time.monotonic()
            pod = lab.add(PodSpec(f"c{created}", namespace, annotations))
            churned = ChurnedPod(pod, created_at, rng.uniform(*lifetime_s))
            report.pods.append(churned)
            heapq.heappush(alive, (created_at + churned.lifetime_s, next(tiebreak), churned))
            created += 1
            next_create_s += 1.0 / pods_per_s
            continue
        wake = min([t for t, _, _ in alive[:1]] + ([next_create_s] if created < total_pods else []))
        time.sleep(max(0.0, min(wake - time.monotonic(), 0.05)))
    report.duration_s = time.monotonic() - started
    return report
