"""Where the real helm and kubectl are: `.tools/bin` of this checkout, put there by
scripts/install.sh (never /usr/bin/kubectl, which is a cloud SDK wrapper on some machines)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS_BIN = ROOT / ".tools" / "bin"


def tool_path(name: str) -> Path | None:
    """The installed binary `name`, or None when scripts/install.sh has not put it there."""
    path = TOOLS_BIN / name
    return path if os.access(path, os.X_OK) else None


def require_tool(name: str) -> Path:
    """The installed binary `name`; fails the test with what to run when it is missing."""
    path = tool_path(name)
    if path is None:
        pytest.fail(f"{TOOLS_BIN / name} is missing: run `bash scripts/install.sh` (or `make install`)")
    return path


def helm() -> Path:
    return require_tool("helm")


def kubectl() -> Path:
    return require_tool("kubectl")
