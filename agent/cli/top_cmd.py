"""`podbw top`: live per-pod limits, throughput, utilization, drops and shaping state.

Reads a running agent's /metrics; when nothing answers there, samples the node itself
(observe-only) unless `--no-fallback`. Without a terminal, or with `--once`, it prints one
plain table and exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import TYPE_CHECKING

from agent.cli.extras import MissingExtra, require
from agent.cli.flags import add_discovery_flags, add_flag, add_settings_flags, build_settings
from agent.cli.parser import CommandParser
from agent.discovery.settings import DiscoverySettings
from agent.model.value_parsers import boolean, seconds_between
from agent.service.settings import AgentSettings
from agent.shaping.settings import ShapingSettings

if TYPE_CHECKING:
    from agent.cli.top_rows import PodRow
    from agent.cli.top_screen import RowSource

DEFAULT_URL = "http://127.0.0.1:9637/metrics"


def register(sub: argparse._SubParsersAction) -> None:
    parser: CommandParser = sub.add_parser(
        "top",
        help="live view of every pod's limits, throughput and shaping state",
        description="The discovery flags, --egress-mode and --annotations-file are used only when "
        "--url does not answer: podbw top then samples this node itself, looking where the agent looks.",
    )
    add_flag(parser, "--url", DEFAULT_URL, "the agent's /metrics; if nothing answers, podbw top samples itself")
    add_flag(parser, "--no-fallback", False, "fail instead of sampling when --url does not answer", boolean, switch=True)
    add_flag(
        parser, "--once", False, "print one plain table and exit (the default without a terminal)", boolean, switch=True
    )
    add_flag(parser, "--interval", 1.0, "refresh period in seconds", seconds_between(0.1, 3600), metavar="SECONDS")
    add_discovery_flags(parser)
    add_settings_flags(parser, ShapingSettings, only=("egress_mode",))
    add_settings_flags(parser, AgentSettings, only=("annotations_file",))
    parser.make_settings = lambda args: build_settings(DiscoverySettings, args)
    parser.set_defaults(func=run)


def open_source(args: argparse.Namespace) -> tuple[RowSource, list[PodRow]]:
    """The agent at --url, or the local fallback; with the first rows already fetched."""
    from agent.cli.top_sources import LocalSource, MetricsSource, SourceUnreachable

    remote = MetricsSource(args.url)
    try:
        return remote, remote.rows()
    except SourceUnreachable as err:
        if args.no_fallback:
            raise
        print(f"podbw top: {err}; sampling this node directly (observe-only)", file=sys.stderr)
    local = LocalSource(
        # Observe-only: showing the pins without CRI changes nothing.
        dataclasses.replace(args.settings, netns_fallback=True),
        egress_mode=args.egress_mode,
        annotations_file=args.annotations_file,
        interval_s=args.interval,
    )
    try:
        return local, local.rows()
    except BaseException:
        local.close()
        raise


def run(args: argparse.Namespace) -> int:
    try:
        require("rich", "top", "podbw top")
    except MissingExtra as err:
        print(f"podbw top: {err}", file=sys.stderr)
        return 2
    # Imported here so that `podbw --help` and the other commands start fast.
    from agent.cli.top_render import render_plain
    from agent.cli.top_screen import LiveScreen, TopViewer, frame_title
    from agent.cli.top_sources import SourceError

    interval_s: float = args.interval
    try:
        source, rows = open_source(args)
    except SourceError as err:
        print(f"podbw top: {err}", file=sys.stderr)
        return 1
    try:
        if args.once or not sys.stdout.isatty():
            sys.stdout.write(render_plain(rows, frame_title("podbw top", source.description, rows)))
            return 0
        with LiveScreen() as screen:
            viewer = TopViewer(source, screen)
            viewer.rows = rows
            screen.show(rows, viewer.title("Ctrl-C quits"))
            next_s = time.monotonic() + interval_s
            while True:
                time.sleep(max(0.0, next_s - time.monotonic()))
                viewer.refresh("Ctrl-C quits")
                # After a slow refresh (the local sample can take seconds), still pause half
                # an interval rather than refreshing back to back.
                next_s = max(next_s + interval_s, time.monotonic() + interval_s / 2)
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a live view ends
    finally:
        source.close()

