"""Discovery settings: where the runtime is, where it pins namespaces, how often to resync."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Mapping

from agent.cri.endpoint import Endpoint
from agent.cri.errors import CriError
from agent.kube.config import SERVICE_ACCOUNT_DIR, in_cluster
from agent.model.option import setting
from agent.model.value_parsers import directory, one_of, optional_file, seconds_between, shown

CRIO_ENDPOINT = "unix:///var/run/crio/crio.sock"
CONTAINERD_ENDPOINT = "unix:///run/containerd/containerd.sock"
AUTO_CRI_ENDPOINTS = (
    CRIO_ENDPOINT,
    CONTAINERD_ENDPOINT,
    "unix:///run/podbw-lab/crio.sock",
)
"""Like crictl, try the usual sockets: CRI-O's, containerd's, then the default `podbw lab`'s."""


def parse_cri_endpoint(text: str) -> str | None:
    """`auto`: the first of AUTO_CRI_ENDPOINTS that exists; `none` (or empty): no CRI."""
    if text in ("", "none"):
        return None
    if text == "auto":
        for endpoint in AUTO_CRI_ENDPOINTS:
            if os.path.exists(Endpoint.parse(endpoint).socket_path):
                return endpoint
        # Nothing yet: wait for CRI-O's socket (not ready, no pods) rather than guess from pins.
        return CRIO_ENDPOINT
    try:
        return str(Endpoint.parse(text))
    except CriError as err:
        raise ValueError(f"{shown(text)}: {err}") from None


KUBERNETES_AUTO, KUBERNETES_ON, KUBERNETES_OFF = "auto", "on", "off"
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MAX_NODE_NAME_CHARS = 253


def parse_node_name(text: str) -> str | None:
    """A Node's name as the API allows it (a DNS subdomain); empty: not given."""
    if not text:
        return None
    if len(text) > MAX_NODE_NAME_CHARS or not _DNS_SUBDOMAIN.fullmatch(text):
        raise ValueError(
            f"{shown(text)} is not a node name (lowercase letters, digits, '-' and '.', at most "
            f"{MAX_NODE_NAME_CHARS} characters)"
        )
    return text


@dataclass(frozen=True)
class DiscoverySettings:
    cri_endpoint: str | None = setting(
        CRIO_ENDPOINT,
        "--cri-endpoint",
        "CRI runtime socket; 'auto' takes the first that exists of "
        + ", ".join(AUTO_CRI_ENDPOINTS)
        + "; 'none' uses the netns directory alone",
        parse_cri_endpoint,
        default_text="auto",
        metavar="ENDPOINT",
    )
    """CRI runtime socket (`unix:///path`); None disables CRI and uses the netns directory alone."""
    netns_dir: str = setting(
        "/var/run/netns", "--netns-dir", "directory where the runtime pins pod network namespaces", directory,
        metavar="DIR",
    )
    """Where the runtime pins pod network namespaces."""
    resync_interval_s: float = setting(
        30.0, "--resync-interval", "full resync period in seconds", seconds_between(1, 86400), metavar="SECONDS"
    )
    """Full resync period: the safety net for missed events."""
    cri_timeout_s: float = setting(
        2.0, "--cri-timeout", "deadline of each CRI call in seconds", seconds_between(0, 60, low_included=False),
        metavar="SECONDS",
    )
    """Deadline of every unary CRI call."""
    kubernetes: str = setting(
        KUBERNETES_AUTO, "--kubernetes",
        "watch this node's pods and the namespaces through the Kubernetes API: on, off, or auto (on when a "
        "ServiceAccount token is mounted or --kubeconfig is given)",
        one_of(KUBERNETES_AUTO, KUBERNETES_ON, KUBERNETES_OFF), metavar="auto|on|off",
    )
    """Whether pods' current annotations and namespace defaults come from the API; `auto` is
    decided at start (resolve_kubernetes)."""
    node_name: str | None = setting(
        None, "--node-name", "this node's name in the Kubernetes API (required when the API is used)",
        parse_node_name, metavar="NAME",
    )
    """Only pods with spec.nodeName equal to it are watched."""
    kubeconfig: str | None = setting(
        None, "--kubeconfig", "kubeconfig for the Kubernetes API outside the cluster (default: the in-cluster "
        "ServiceAccount)", optional_file, metavar="FILE",
    )
    """Its current context is used; None: the in-cluster config."""
    service_account_dir: str = SERVICE_ACCOUNT_DIR
    """Where the in-cluster token and CA are mounted."""
    lookup_timeout_s: float = 10.0
    """How long a new pin is followed before the next resync takes over."""
    netns_fallback: bool = False
    """List the pins while the runtime cannot be reached, for read-only viewers (`podbw pods`).
    Never for the agent: pins carry no annotations, so shaping them would lift every limit."""


def resolve_kubernetes(settings: DiscoverySettings, environ: Mapping[str, str] = os.environ) -> DiscoverySettings:
    """`settings` with `kubernetes` decided (on or off). ValueError (one line) when the API is to
    be used and no node name is given."""
    mode = settings.kubernetes
    if mode == KUBERNETES_AUTO:
        found = settings.kubeconfig or in_cluster(settings.service_account_dir, environ)
        mode = KUBERNETES_ON if found else KUBERNETES_OFF
        why = f"--kubeconfig {settings.kubeconfig} is given" if settings.kubeconfig else (
            f"a ServiceAccount token is mounted in {settings.service_account_dir}"
        )
    else:
        why = "--kubernetes is on"
    if mode == KUBERNETES_ON and not settings.node_name:
        raise ValueError(
            f"{why}, so --node-name (PODBW_NODE_NAME) is needed to watch this node's pods; "
            "or pass --kubernetes off to use CRI alone"
        )
    return dataclasses.replace(settings, kubernetes=mode)
