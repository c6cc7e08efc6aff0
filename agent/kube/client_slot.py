"""One lightkube client, made on first use and dropped after a failure: a broken connection (or a
watch that failed) must not outlive the outage, and a kubeconfig that appears later is found."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from lightkube import Client

log = logging.getLogger(__name__)


class ClientSlot:
    """Thread-safe: drop() may come from any thread (to end a watch that blocks)."""

    def __init__(self, client_factory: Callable[[], Client], what: str) -> None:
        self._client_factory = client_factory
        self._what = what
        """Whose client it is, for messages."""
        self._lock = threading.Lock()
        self._client: Client | None = None

    def get(self) -> Client:
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    def drop(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as err:  # closing a broken connection may fail too; it is gone either way
                log.debug("closing the API client of %s: %s", self._what, err)
