"""The lab's one exception type: an expected failure with a message fit for one line on stderr."""

from __future__ import annotations


class LabError(Exception):
    """Something the lab could not do (bad name, plugin failure, lab not up, ...)."""
