"""Flags declared from settings dataclasses (or one command's own), each with a PODBW_* variable;
agent.cli.parser resolves and checks them."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, Iterable

from agent.cli.parser import NOT_GIVEN, CommandParser, Declared
from agent.discovery.settings import DiscoverySettings
from agent.model.option import Option, option_of


def dest_of(option: Option) -> str:
    """The namespace attribute of a flag, as argparse names it: `--web.listen-address` -> `web.listen_address`."""
    return option.flag.lstrip("-").replace("-", "_")


def declare(parser: CommandParser, option: Option, default: Any) -> None:
    if any(declared.option.flag == option.flag for declared in parser.declared):
        return  # e.g. `run` holds the log flags in its settings tree already
    kwargs: dict[str, Any] = {"default": NOT_GIVEN, "help": help_text(option, default)}
    if option.negatable:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif option.switch:
        kwargs["action"] = "store_true"
    else:
        kwargs["metavar"] = option.metavar
    parser.add_argument(option.flag, *option.aliases, dest=dest_of(option), **kwargs)
    parser.declared.append(Declared(dest_of(option), option, default))


def help_text(option: Option, default: Any) -> str:
    shown = option.default_text if option.default_text is not None else default
    if option.negatable:
        parts = [f"default {'on' if default else 'off'}"]
    else:
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
