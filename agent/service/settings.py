"""Settings of `podbw run`, assembled by the CLI from flags and PODBW_* variables."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.discovery.discovery import DiscoverySettings
from agent.shaping.settings import ShapingSettings


@dataclass(frozen=True)
class AgentSettings:
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    shaping: ShapingSettings = field(default_factory=ShapingSettings)
    annotations_file: str | None = None
    """YAML `namespace/name: {key: value}` overriding CRI annotations, watched live."""
    listen_address: str = ":9637"
    """Where /metrics, /healthz and /readyz are served."""
    web_config_file: str | None = None
    """exporter-toolkit web config (TLS, basic auth, headers), re-read when it changes."""
    tls_cert_file: str | None = None
    """Deprecated: the --web.tls-* flags, served as the equivalent web config."""
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    sample_interval_s: float = 1.0
    """Statistics sampling period; throughput is the mean over one interval."""
    peak_window_s: float = 60.0
    """Trailing window of podbw_throughput_peak_bytes_per_second."""
    max_interfaces_per_pod: int = 8
    """Interfaces exported per pod (eight series each); the rest are counted, not exported."""
    cleanup_on_exit: bool = False
    """Remove podbw's qdiscs on shutdown (default: limits stay while the agent is away)."""
