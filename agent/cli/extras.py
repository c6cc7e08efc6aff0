"""Commands whose libraries live in an optional extra say which one to install."""

from __future__ import annotations

import importlib.util


class MissingExtra(Exception):
    """A library of an optional extra is not installed; the message says what to install."""


def require(module: str, extra: str, command: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(
            f"{command} needs {module}, which is not installed: pip install 'podbw[{extra}]' "
            f"(or, in a checkout, pip install -e '.[{extra}]')"
        )
