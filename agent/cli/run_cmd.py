"""`podbw run`: the node agent. SIGTERM stops it within 2 s; limits stay in the kernel."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from typing import TYPE_CHECKING

from agent.cli.flags import add_discovery_flags, add_flag, cri_endpoint
from agent.model.ownership import ifb_owner
from agent.shaping.settings import EGRESS_MODES, ShapingSettings

if TYPE_CHECKING:
    from agent.service.settings import AgentSettings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="run the node agent")
    add_discovery_flags(parser)
    add_flag(parser, "--resync-interval", 30.0, "full resync period in seconds", type=float)
    add_flag(parser, "--egress-mode", "pod", "where pod egress is limited", choices=list(EGRESS_MODES))
    add_flag(parser, "--take-over-foreign", False, "replace root qdiscs podbw did not create", action="store_true")
    add_flag(parser, "--annotations-file", None, "YAML 'namespace/name: {key: value}' overriding CRI annotations")
    add_flag(parser, "--web.listen-address", ":9637", "address of /metrics, /healthz, /readyz")
    add_flag(parser, "--web.config.file", None,
             "exporter-toolkit web config (TLS, basic auth, headers) of the HTTP endpoint, re-read when it changes")
    add_flag(parser, "--web.tls-cert-file", None, "DEPRECATED, use --web.config.file: TLS certificate for the HTTP endpoint")
    add_flag(parser, "--web.tls-key-file", None, "DEPRECATED, use --web.config.file: TLS key for the HTTP endpoint")
    add_flag(parser, "--web.tls-client-ca-file", None,
             "DEPRECATED, use --web.config.file: CA that client certificates must chain to")
    add_flag(parser, "--sample-interval", 1.0, "statistics sampling period in seconds", type=float)
    add_flag(parser, "--peak-window", 60.0, "trailing window of the peak throughput gauge in seconds", type=float)
    add_flag(parser, "--max-interfaces-per-pod", 8, "interfaces exported per pod; the rest are counted, not exported", type=int)
    add_flag(parser, "--cleanup-on-exit", False, "remove podbw's qdiscs when the agent stops", action="store_true")
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> AgentSettings:
    from agent.discovery.discovery import DiscoverySettings
    from agent.service.settings import AgentSettings

    discovery = DiscoverySettings(
        cri_endpoint=cri_endpoint(args.cri_endpoint),
        netns_dir=args.netns_dir,
        resync_interval_s=float(args.resync_interval),
        cri_timeout_s=float(args.cri_timeout),
    )
    return AgentSettings(
        discovery=discovery,
        shaping=ShapingSettings(
            egress_mode=args.egress_mode,
            take_over_foreign=bool(args.take_over_foreign),
            ifb_owner=ifb_owner(discovery.cri_endpoint, discovery.netns_dir),
        ),
        annotations_file=args.annotations_file,
        listen_address=getattr(args, "web.listen_address"),
        web_config_file=getattr(args, "web.config.file"),
        tls_cert_file=getattr(args, "web.tls_cert_file"),
        tls_key_file=getattr(args, "web.tls_key_file"),
        tls_client_ca_file=getattr(args, "web.tls_client_ca_file"),
        sample_interval_s=float(args.sample_interval),
        peak_window_s=float(args.peak_window),
        max_interfaces_per_pod=int(args.max_interfaces_per_pod),
        cleanup_on_exit=bool(args.cleanup_on_exit),
    )


def run(args: argparse.Namespace) -> int:
    from agent.netlink import pyroute2_lean
    from agent.service.malloc_tuning import tune_malloc

    # Before Agent() starts any thread: arenas are created per thread as they first allocate.
    tune_malloc()
    # Before anything imports pyroute2: the agent needs IPRoute, not the whole library.
    pyroute2_lean.install()
    from agent.service.agent import Agent
    from agent.service.http import MetricsServerError

    try:
        agent = Agent(settings_from_args(args))
    except MetricsServerError as exc:  # a bad web config or listen address: before any thread
        print(f"podbw run: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        agent.start()
        stop.wait()
    except MetricsServerError as exc:  # e.g. the port is taken
        print(f"podbw run: {exc}", file=sys.stderr)
        return 2
    finally:
        agent.stop()
    return 0
