"""`podbw` entry point: one argparse tree, each subcommand in a module of its own."""

from __future__ import annotations

import argparse
import sys

from agent import __version__
from agent.cli.flags import add_settings_flags, build_settings
from agent.cli.parser import CommandParser, RootParser
from agent.service.settings import LogSettings

LONG_RUNNING = frozenset({"run", "demo", "lab"})


def build_parser() -> argparse.ArgumentParser:
    parser = RootParser(prog="podbw", description=__doc__)
    parser.add_argument("--version", action="version", version=f"podbw {__version__}")
    # Accepted before the command (`podbw --log-level debug run`) and after it (`podbw run --log.level debug`).
    add_settings_flags(parser, LogSettings)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    from agent.cli import dashboards_cmd, demo_cmd, lab_cmd, pods_cmd, run_cmd, top_cmd

    run_cmd.register(sub)
    pods_cmd.register(sub)
    lab_cmd.register(sub)
    top_cmd.register(sub)
    demo_cmd.register(sub)
    dashboards_cmd.register(sub)
    for command in sub.choices.values():
        add_settings_flags(command, LogSettings)
    return parser


def main(argv: list[str] | None = None) -> int:
    from agent.service.logs import configure

    args = build_parser().parse_args(argv)
    configure(build_settings(LogSettings, args), default_level="info" if args.command in LONG_RUNNING else "warn")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `podbw pods | head`: the reader left; say nothing more.
        sys.stderr.close()
        return 0
