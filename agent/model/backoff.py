"""Exponential retry delay with jitter, so many agents don't hammer a restarting runtime or API server."""

from __future__ import annotations

import random

JITTER_FRACTION = 0.1


class Backoff:
    """Delays initial_s, initial_s*factor, ... capped at max_s, each +-10% at random."""

    def __init__(self, initial_s: float = 0.1, max_s: float = 5.0, factor: float = 2.0) -> None:
        if initial_s <= 0 or max_s < initial_s or factor < 1:
            raise ValueError(
                f"backoff needs 0 < initial_s <= max_s and factor >= 1, "
                f"got initial_s={initial_s} max_s={max_s} factor={factor}"
            )
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self._base_s = initial_s

    def next_delay_s(self) -> float:
        """The delay to wait now; the following call returns a longer one (up to max_s)."""
        base_s = self._base_s
        self._base_s = min(self._base_s * self.factor, self.max_s)
        return base_s * random.uniform(1 - JITTER_FRACTION, 1 + JITTER_FRACTION)

    def reset(self) -> None:
        """Back to initial_s, after a connection has worked."""
        self._base_s = self.initial_s
