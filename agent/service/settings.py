"""Settings of `podbw run`: one tree of frozen dataclasses holding every default.

The CLI derives each flag and PODBW_* variable from the fields' `setting()` metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.discovery.settings import DiscoverySettings
from agent.metrics.settings import CollectorSettings, SamplingSettings
from agent.model.option import setting
from agent.model.value_parsers import boolean, one_of, optional_file
from agent.shaping.settings import ShapingSettings

LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("logfmt", "json")


def parse_listen_address(text: str) -> str:
    """`host:port`, `:port` or `[v6]:port`, checked as the HTTP server will read it."""
    from agent.service.http import MetricsServerError, parse_address  # the server's own rules

    try:
        parse_address(text)
    except MetricsServerError as err:
        raise ValueError(str(err)) from None
    return text


@dataclass(frozen=True)
class WebSettings:
    listen_address: str = setting(
        ":9637", "--web.listen-address", "address of /metrics, /healthz, /readyz", parse_listen_address,
        metavar="[HOST]:PORT",
    )
    """Where /metrics, /healthz and /readyz are served; `:port` listens on every address."""
    config_file: str | None = setting(
        None, "--web.config.file",
        "exporter-toolkit web config (TLS, basic auth, headers) of the HTTP endpoint, re-read when it changes",
        optional_file, metavar="FILE",
    )
    """The exporter-toolkit web configuration file, as node_exporter takes it; None: plain HTTP."""


@dataclass(frozen=True)
class LogSettings:
    level: str | None = setting(
        None,
        "--log.level",
        f"only log messages of this severity or above: {', '.join(LOG_LEVELS)} (default info for run, "
        "demo and lab, warn for the others)",
        one_of(*LOG_LEVELS, aliases={"warning": "warn"}), aliases=("--log-level",), metavar="LEVEL",
    )
    """Lowest severity logged; None: info for long-running commands, warn for the others."""
    format: str = setting(
        "logfmt", "--log.format", "output format of log messages: " + ", ".join(LOG_FORMATS),
        one_of(*LOG_FORMATS), metavar="FORMAT",
    )
    """`logfmt` (key=value, one line per message) or `json` (one object per line), on stderr."""


@dataclass(frozen=True)
class AgentSettings:
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    """Where pods come from."""
    shaping: ShapingSettings = field(default_factory=ShapingSettings)
    """How limits are put in the kernel."""
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    """How statistics are read."""
    collectors: CollectorSettings = field(default_factory=CollectorSettings)  # type: ignore[valid-type]
    """Which metric families are exported."""
    web: WebSettings = field(default_factory=WebSettings)
    """How /metrics is served."""
    logging: LogSettings = field(default_factory=LogSettings)
    """What is logged, and how."""
    annotations_file: str | None = setting(
        None, "--annotations-file", "YAML 'namespace/name: {key: value}' overriding CRI annotations", optional_file,
        metavar="FILE",
    )
    """YAML `namespace/name: {key: value}` overriding CRI annotations, watched live."""
    cleanup_on_exit: bool = setting(
        False, "--cleanup-on-exit", "remove podbw's qdiscs when the agent stops", boolean, switch=True
    )
    """Remove podbw's qdiscs on shutdown (default: limits stay while the agent is away)."""
