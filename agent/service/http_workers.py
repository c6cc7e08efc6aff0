"""The fixed pool of threads that turn complete HTTP requests into responses."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Generic, TypeVar

from agent.service.http_request import Request, Response, error_response

log = logging.getLogger(__name__)

Handler = Callable[[Request], Response]
Ticket = TypeVar("Ticket")


class WorkerPool(Generic[Ticket]):
    """`size` threads, made at start() and never more: each takes a (ticket, request), runs the
    handler and passes (ticket, response) to `done`. A handler that raises answers 500."""

    def __init__(self, size: int, handler: Handler, done: Callable[[Ticket, Response], None]) -> None:
        self._handler = handler
        self._done = done
        self._jobs: queue.SimpleQueue[tuple[Ticket, Request] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"podbw-http-worker-{i + 1}", daemon=True)
            for i in range(size)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, ticket: Ticket, request: Request) -> None:
        self._jobs.put((ticket, request))

    def stop(self, timeout_s: float) -> None:
        """Let each worker finish its request and end; wait for them at most timeout_s in all
        (a stuck handler stays behind as a daemon thread rather than delay the agent's stop)."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout_s / len(self._threads))

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            ticket, request = job
            try:
                response = self._handler(request)
            except Exception:
                log.exception("HTTP %s %.80r failed", request.method, request.target)
                response = error_response(500, "internal error", close=True)
            self._done(ticket, response)
