"""`podbw` entry point: one argparse tree, each subcommand in a module of its own."""

from __future__ import annotations

import argparse
import logging
import sys

from agent import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="podbw", description=__doc__)
    parser.add_argument("--version", action="version", version=f"podbw {__version__}")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log verbosity"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from agent.cli import lab_cmd, pods_cmd, run_cmd

    run_cmd.register(sub)
    pods_cmd.register(sub)
    lab_cmd.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # apscheduler logs every job run at INFO: one line per second is noise, not an event.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
