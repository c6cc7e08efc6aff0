"""`podbw lab ...`: the node simulator lives in agent.lab; this only hooks it into the CLI."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from agent.lab.commands import add_lab_parser

    add_lab_parser(sub)
