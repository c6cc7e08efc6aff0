"""Discovery settings: where the runtime is, where it pins namespaces, how often to resync."""

from __future__ import annotations

import os
from dataclasses import dataclass

from agent.cri.endpoint import Endpoint
from agent.cri.errors import CriError
from agent.model.option import setting
from agent.model.value_parsers import directory, seconds_between, shown

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
    lookup_timeout_s: float = 10.0
    """How long a new pin is followed before the next resync takes over."""
    netns_fallback: bool = False
    """List the pins while the runtime cannot be reached, for read-only viewers (`podbw pods`).
    Never for the agent: pins carry no annotations, so shaping them would lift every limit."""
