"""The `podbw` parsers: after the whole command line is read, and before any command starts,
each declared flag's value is taken from the flag, else from its PODBW_* variable, else from
the default, and parsed by its Option. A bad value ends the command with exit code 2 and one
line on stderr: `podbw run: error: argument --resync-interval: '-1': must be at least 1 ...`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from agent.model.option import Option

NOT_GIVEN = argparse.SUPPRESS
"""The default of every derived flag: absent from the namespace unless given, so a flag given
after the command never hides one given before it (`podbw --log-level debug run`)."""
_CHAIN = "_podbw_parsers"


@dataclass(frozen=True)
class Declared:
    """A flag a parser accepts, with what it stands for when it is not given."""

    dest: str
    option: Option
    default: Any


class CommandParser(argparse.ArgumentParser):
    """A (sub)command's parser: knows its derived flags, and fails with a one-line error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.declared: list[Declared] = []
        self.make_settings: Callable[[argparse.Namespace], Any] | None = None
        """Builds `args.settings` from the resolved flags; a ValueError is a usage error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.splitlines())}\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        # Subcommand parsers run inside this call; each records itself for the root to resolve.
        setattr(namespace, _CHAIN, [self, *vars(namespace).pop(_CHAIN, [])])
        return namespace, extras


class RootParser(CommandParser):
    """The `podbw` parser: resolves and checks every flag of the chosen command after parsing."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        chain: list[CommandParser] = vars(namespace).pop(_CHAIN)
        command = chain[-1]
        try:
            resolve(chain, namespace)
            if command.make_settings is not None:
                namespace.settings = command.make_settings(namespace)
        except ValueError as err:
            command.error(str(err))
        return namespace, extras


def resolve(chain: Sequence[CommandParser], namespace: argparse.Namespace) -> None:
    """Set every declared flag of the parsers in `chain` to its parsed value; ValueError names
    the flag or variable whose text is bad."""
    done = set()
    for parser in chain:
        for declared in parser.declared:
            if declared.dest not in done:
                done.add(declared.dest)
                setattr(namespace, declared.dest, value_of(declared, namespace))


def value_of(declared: Declared, namespace: argparse.Namespace) -> Any:
    option = declared.option
    if hasattr(namespace, declared.dest):
        if option.negatable:
            return bool(getattr(namespace, declared.dest))  # --x or --no-x
        if option.switch:
            return True
        return _parsed(option, getattr(namespace, declared.dest), f"argument {'/'.join((option.flag, *option.aliases))}")
    env_text = os.environ.get(option.env, "")
    if env_text:
        return _parsed(option, env_text, f"environment variable {option.env}")
    if option.default_text is not None:
        return _parsed(option, option.default_text, f"default of {option.flag}")
    return declared.default


def _parsed(option: Option, text: str, where: str) -> Any:
    try:
        return option.parse(text)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
