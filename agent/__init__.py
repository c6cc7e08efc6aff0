"""podbw: per-pod bandwidth limits and per-pod network metrics for CRI-O nodes."""

__version__ = "0.1.0"
