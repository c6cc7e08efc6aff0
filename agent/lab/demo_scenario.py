"""What `podbw demo` runs: its pods, the traffic between them and the live limit change.

One pod per case podbw handles: ingress only, egress only, both, none, an invalid value, and
a host-network pod (not podbw's to shape). Flows are chosen so each limit shows up as a
throughput pinned at it, while the unlimited traffic is capped by iperf3 itself so the demo
stays light on a small machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.lab.spec import PodSpec
from agent.model.annotations import EGRESS_BANDWIDTH, INGRESS_BANDWIDTH, desired_shaping

LAB_NAME = "demo"

CHANGED_NAMESPACE = "shop"
CHANGED_NAME = "web"
CHANGED_POD = f"{CHANGED_NAMESPACE}/{CHANGED_NAME}"
CHANGED_KEY = INGRESS_BANDWIDTH
CHANGED_DIRECTION = "ingress"
LIMIT_BEFORE = "20M"
LIMIT_AFTER = "40M"

INVALID_NAMESPACE = "jobs"
INVALID_NAME = "broken"

PODS = (
    PodSpec(
        CHANGED_NAME, CHANGED_NAMESPACE, {INGRESS_BANDWIDTH: LIMIT_BEFORE, EGRESS_BANDWIDTH: "10M"}, labels={"app": "web"}
    ),
    PodSpec("api", "shop", {INGRESS_BANDWIDTH: "50M"}, labels={"app": "api"}),
    PodSpec("cart", "shop", {EGRESS_BANDWIDTH: "5M"}, labels={"app": "cart"}),
    PodSpec("batch", "jobs", {}, labels={"app": "batch"}),
    # `Mbps` is not a Kubernetes quantity suffix: podbw reports it invalid and leaves it alone.
    PodSpec(INVALID_NAME, INVALID_NAMESPACE, {INGRESS_BANDWIDTH: "10Mbps"}, labels={"app": "broken"}),
    # Shares the node's namespace: limiting it would limit the node. podbw never sees it.
    PodSpec("node-agent", "kube-system", {EGRESS_BANDWIDTH: "1M"}, host_network=True),
)


@dataclass(frozen=True)
class Flow:
    """One iperf3 TCP stream: data goes from `client` to `server`."""

    client: str
    server: str
    port: int
    bitrate: str | None = None
    """iperf3 `-b` cap (bits/s, iperf3 syntax); None lets TCP go as fast as the limits allow."""
    shows: str = ""

    def describe(self) -> str:
        cap = f", capped at {self.bitrate}bit/s by iperf3" if self.bitrate else ""
        return f"{self.client} -> {self.server}{cap}: {self.shows}"


FLOWS = (
    Flow("jobs/batch", "shop/web", 5301, shows="shop/web ingress limit (changed midway)"),
    Flow("shop/web", "jobs/batch", 5302, shows="shop/web egress limit"),
    Flow("shop/cart", "shop/api", 5303, shows="shop/cart egress limit"),
    Flow("jobs/batch", "shop/api", 5304, shows="shop/api ingress limit, shared with cart's flow"),
    Flow("shop/api", "jobs/broken", 5305, bitrate="8M", shows="jobs/broken: invalid limit, so unshaped"),
)


def annotate_args() -> list[str]:
    """kubectl's arguments for the change midway, as a user would make it."""
    return ["annotate", "pod", "-n", CHANGED_NAMESPACE, CHANGED_NAME, f"{CHANGED_KEY}={LIMIT_AFTER}", "--overwrite"]


def changed_annotations() -> str:
    """The annotations file written midway when kubectl cannot make the change."""
    return (
        "# written by podbw demo: overrides the pod's annotations while the agent runs\n"
        f"{CHANGED_POD}:\n"
        f"  {CHANGED_KEY}: {LIMIT_AFTER}\n"
    )



def expected_limits() -> set[tuple[str, str]]:
    """(namespace/name, direction) the agent must have applied before traffic starts."""
    return {
        (spec.key, direction.value)
        for spec in PODS
        if not spec.host_network
        for direction, want in desired_shaping(spec.annotations).items()
        if want.params is not None
    }


def shaped_pods() -> list[str]:
    """The pods podbw handles: all but host-network ones."""
    return [spec.key for spec in PODS if not spec.host_network]
