"""The build podbw_build_info describes: version, git revision and Python version.

The revision is written into the package at build time (the Dockerfile's REVISION build
argument becomes agent/revision.txt); an install without that file reports "unknown".
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from pathlib import Path

from agent import __version__

REVISION_FILE = Path(__file__).resolve().parents[1] / "revision.txt"
UNKNOWN = "unknown"
_REVISION = re.compile(r"[0-9A-Za-z._+-]{1,64}")


@dataclass(frozen=True)
class BuildInfo:
    version: str
    revision: str = UNKNOWN
    python_version: str = platform.python_version()


def read_revision(path: Path = REVISION_FILE) -> str:
    """The revision in `path` (one token such as a commit hash); "unknown" when the file is
    missing, unreadable, or holds anything else, so a bad file never becomes a label value."""
    try:
        text = path.read_text(encoding="ascii", errors="strict").strip()
    except (OSError, UnicodeDecodeError):
        return UNKNOWN
    return text if _REVISION.fullmatch(text) else UNKNOWN


def current_build() -> BuildInfo:
    return BuildInfo(version=__version__, revision=read_revision())
