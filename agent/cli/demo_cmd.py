"""`podbw demo`: lab node + agent + iperf3 traffic + `podbw top`, all removed on exit.

The orchestration lives in agent.lab.demo (it runs processes); this module parses flags and
hands it the view: the live table on a terminal, plain tables every few seconds otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import TYPE_CHECKING, Iterator

from agent.cli.flags import add_flag, add_settings_flags
from agent.cli.parser import CommandParser
from agent.model.value_parsers import integer_between, one_of, seconds_between
from agent.shaping.settings import ShapingSettings

if TYPE_CHECKING:
    from agent.lab.demo import DemoView

PLAIN_EVERY_S = 3.0
LAB_NAME = "demo"


def register(sub: argparse._SubParsersAction) -> None:
    parser: CommandParser = sub.add_parser(
        "demo",
        help="lab node + agent + traffic + live view for a while, then remove everything",
        description="Brings up a lab node with 6 pods in 3 namespaces, runs the agent and iperf3 traffic, "
        "shows `podbw top`, changes one pod's limit midway, and tears it all down on exit (also on "
        "Ctrl-C and errors). Needs root.",
    )
    add_flag(
        parser, "--duration", 30.0, "seconds to run before tearing down", seconds_between(0, 86400, low_included=False),
        metavar="SECONDS",
    )
    add_flag(
        parser, "--output", "auto", "live: a table redrawn in place; plain: a table every few seconds and event "
        "lines, for scripts; auto: live on a terminal, else plain",
        one_of("auto", "live", "plain"), metavar="auto|live|plain",
    )
    add_flag(parser, "--demo-lab", LAB_NAME, "name of the demo's lab (its bridge, subnet and state dir derive from it)")
    add_flag(
        parser, "--port", 0, "agent port on 127.0.0.1 (0: 9637 if free, else any free port)", integer_between(0, 65535),
        metavar="PORT",
    )
    add_settings_flags(parser, ShapingSettings, only=("egress_mode",))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so that `podbw --help` and the other commands start fast.
    from agent.cli.top_screen import LiveScreen, PlainScreen, TopViewer
    from agent.cli.top_sources import MetricsSource
    from agent.lab.demo import DemoSettings, run_demo
    from agent.lab.errors import LabError

    if os.geteuid() != 0:
        print("podbw demo: needs root (network namespaces, qdiscs, CNI)", file=sys.stderr)
        return 1
    live = args.output == "live" or (args.output == "auto" and sys.stdout.isatty())
    settings = DemoSettings(
        lab_name=args.demo_lab,
        duration_s=args.duration,
        port=args.port or None,
        egress_mode=args.egress_mode,
    )

    @contextlib.contextmanager
    def open_view(metrics_url: str) -> Iterator[DemoView]:
        screen = LiveScreen() if live else PlainScreen(every_s=PLAIN_EVERY_S)
        with screen:
            yield TopViewer(MetricsSource(metrics_url), screen, name="podbw demo")

    try:
        result = run_demo(settings, open_view, say=lambda text: print(text, flush=True))
    except LabError as err:
        print(f"podbw demo: {err}", file=sys.stderr)
        return 1
    del result  # Ctrl-C is a normal way to end the demo: exit 0 either way
    return 0
