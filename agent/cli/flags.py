"""Flags derived from settings dataclasses; every flag has a PODBW_* environment variable.

Once the whole command line is read, and before any command starts, each flag's value is
taken from the flag, else from its variable, else from the default, and parsed by its
Option. A bad value ends the command with exit code 2 and one line on stderr:
`podbw run: error: argument --resync-interval: '-1': must be at least 1 and at most 86400 seconds`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from agent.discovery.settings import DiscoverySettings
from agent.model.option import Option, option_of

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


def dest_of(option: Option) -> str:
    """The namespace attribute argparse gives the flag: `--web.listen-address` -> `web.listen_address`."""
    return option.flag.lstrip("-").replace("-", "_")


def declare(parser: CommandParser, option: Option, default: Any) -> None:
    if any(declared.option.flag == option.flag for declared in parser.declared):
        return  # e.g. `run` holds the log flags in its settings tree already
    kwargs: dict[str, Any] = {"default": NOT_GIVEN, "help": help_text(option, default)}
    if option.switch:
        kwargs["action"] = "store_true"
    else:
        kwargs["metavar"] = option.metavar
    action = parser.add_argument(option.flag, *option.aliases, **kwargs)
    parser.declared.append(Declared(action.dest, option, default))


def help_text(option: Option, default: Any) -> str:
    shown = option.default_text if option.default_text is not None else default
    parts = [] if option.switch or shown in (None, "") else [f"default {shown}"]
    parts.append(f"env {option.env}")
    return f"{option.help} ({'; '.join(parts)})".replace("%", "%%")


def add_flag(
    parser: CommandParser, flag: str, default: Any, help: str, parse: Callable[[str], Any] = str, **option: Any
) -> None:
    """A flag of one command that no settings dataclass holds."""
    declare(parser, Option(flag, help, parse, **option), default)


def add_settings_flags(parser: CommandParser, settings: type, only: Iterable[str] | None = None) -> None:
    """The flags of every field of the `settings` dataclass (and of the dataclasses nested in it)
    that has an Option; with `only`, of those top-level fields alone."""
    wanted = None if only is None else set(only)
    for field in dataclasses.fields(settings):
        option = option_of(field)
        if option is not None:
            if wanted is None or field.name in wanted:
                declare(parser, option, field.default)
        elif wanted is None and (nested := nested_settings(field)) is not None:
            add_settings_flags(parser, nested)


def add_discovery_flags(parser: CommandParser) -> None:
    """Where pods are found, for the commands that look at a node as the agent does."""
    add_settings_flags(parser, DiscoverySettings, only=("cri_endpoint", "netns_dir", "cri_timeout_s"))


def nested_settings(field: dataclasses.Field[Any]) -> type | None:
    factory = field.default_factory
    return factory if isinstance(factory, type) and dataclasses.is_dataclass(factory) else None


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


def build_settings(settings: type, namespace: argparse.Namespace) -> Any:
    """An instance of the `settings` dataclass from the resolved flags in `namespace`; fields
    without a flag there keep their defaults."""
    values = {}
    for field in dataclasses.fields(settings):
        option = option_of(field)
        if option is not None:
            if hasattr(namespace, dest_of(option)):
                values[field.name] = getattr(namespace, dest_of(option))
        elif (nested := nested_settings(field)) is not None:
            values[field.name] = build_settings(nested, namespace)
    return settings(**values)
