"""How a setting is given from outside: one flag, its PODBW_* variable, and the parser of its text.

Settings dataclasses declare their fields with `setting()`; the CLI derives every flag and
environment variable from that metadata, so a default, a name or a bound is written once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

METADATA_KEY = "podbw.option"


@dataclass(frozen=True)
class Option:
    """A flag with its environment variable and the function that turns their text into a value."""

    flag: str
    """The flag's name, e.g. `--resync-interval`; the variable is derived from it."""
    help: str
    """One line for `--help`."""
    parse: Callable[[str], Any] = str
    """Text -> value; raises ValueError with a one-line reason for bad text."""
    aliases: tuple[str, ...] = ()
    """Other spellings of the flag, kept for compatibility (e.g. `--log-level`)."""
    metavar: str | None = None
    """What `--help` shows for the value."""
    switch: bool = False
    """A flag without a value that turns the setting on; its variable takes true or false."""
    negatable: bool = False
    """A switch that also has a `--no-` form turning it off (`--no-collector.process`)."""
    default_text: str | None = None
    """Parsed at start when neither flag nor variable is given: for defaults that depend on the
    machine (`--cri-endpoint auto`). None: the field's default is used as it is."""

    @property
    def env(self) -> str:
        """`--cri-endpoint` -> `PODBW_CRI_ENDPOINT`, `--web.listen-address` -> `PODBW_WEB_LISTEN_ADDRESS`."""
        return "PODBW_" + self.flag.lstrip("-").replace("-", "_").replace(".", "_").upper()


def setting(default: Any, flag: str, help: str, parse: Callable[[str], Any] = str, **option: Any) -> Any:
    """A dataclass field given by `flag` (and its PODBW_* variable), parsed by `parse`."""
    return dataclasses.field(default=default, metadata={METADATA_KEY: Option(flag, help, parse, **option)})


def option_of(field: dataclasses.Field[Any]) -> Option | None:
    """The Option a field was declared with, None for fields that are not given from outside."""
    return field.metadata.get(METADATA_KEY)
