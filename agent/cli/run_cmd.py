"""`podbw run`: the node agent. SIGTERM stops it within 2 s; limits stay in the kernel."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading

from agent.cli.flags import add_settings_flags, build_settings
from agent.cli.parser import CommandParser
from agent.discovery.settings import resolve_kubernetes
from agent.model.ownership import ifb_owner
from agent.service.settings import AgentSettings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser: CommandParser = sub.add_parser("run", help="run the node agent")
    add_settings_flags(parser, AgentSettings)
    parser.make_settings = settings_from_args
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> AgentSettings:
    settings: AgentSettings = build_settings(AgentSettings, args)
    discovery = resolve_kubernetes(settings.discovery)
    # Derived, not given: agents watching different runtimes never remove each other's ifbs.
    owner = ifb_owner(discovery.cri_endpoint, discovery.netns_dir)
    return dataclasses.replace(
        settings, discovery=discovery, shaping=dataclasses.replace(settings.shaping, ifb_owner=owner)
    )


def run(args: argparse.Namespace) -> int:
    from agent.service.agent import Agent
    from agent.service.http import MetricsServerError

    try:
        agent = Agent(args.settings)
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
    except MetricsServerError as err:  # e.g. the port is taken: nothing to serve, nothing to do
        print(f"podbw run: {err}", file=sys.stderr)
        agent.stop()
        return 2
    try:
        stop.wait()
    finally:
        agent.stop()
    return 0
