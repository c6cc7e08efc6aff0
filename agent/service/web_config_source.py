"""The web config in force, re-read when its file or its certificate files change.

Checked at most once a second, when a client connects (no thread, no wakeups while nobody
connects): a rotated certificate serves the next connection. A config that fails to load keeps
the last good one in force, is logged once and counted, until the files change again.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from agent.service.web_config import WebConfig, WebConfigError, tls_context

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0

Fingerprint = tuple[tuple[str, object], ...]


def fingerprint(paths: Iterable[str]) -> Fingerprint:
    """What identifies each file's content without reading it: a replaced file (a new inode,
    as a Kubernetes Secret update makes) or one written in place (mtime, size) both show."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((path, (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)))
        except OSError as exc:
            out.append((path, exc.errno))
    return tuple(out)


@dataclass(frozen=True)
class _Loaded:
    config: WebConfig
    context: ssl.SSLContext | None
    fingerprint: Fingerprint


class WebConfigSource:
    """`load()` gives the WebConfig (read from `config_file`, which is watched too; None: a
    config held in memory); its TLS files are loaded too. The constructor raises
    WebConfigError when the first load fails."""

    def __init__(
        self,
        load: Callable[[], WebConfig],
        config_file: str | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._config_file = config_file
        self._clock = clock
        self._loaded = self._load_all()
        self._checked_at = clock()
        self._failed: Fingerprint | None = None
        self.reload_errors = 0
        self.last_reload_ok = True

    @property
    def config(self) -> WebConfig:
        return self._loaded.config

    @property
    def uses_tls(self) -> bool:
        return self._loaded.context is not None

    def tls(self) -> ssl.SSLContext | None:
        """The TLS context for a new connection (None: plain HTTP), reloaded first if the files
        changed. Called by the HTTP event loop only, at every accept."""
        now = self._clock()
        if now - self._checked_at >= CHECK_INTERVAL_S:
            self._checked_at = now
            self._reload_if_changed()
        return self._loaded.context

    def _watched(self, config: WebConfig | None) -> list[str]:
        paths = [self._config_file] if self._config_file else []
        if config is not None and config.tls is not None:
            paths += config.tls.files()
        return paths

    def _load_all(self) -> _Loaded:
        # Each file's fingerprint is taken before it is read: a change while it is read shows
        # as a change at the next check.
        file_print = fingerprint(self._watched(None))
        config = self._load()
        tls_print = fingerprint(self._watched(config)[len(file_print):])
        try:
            context = tls_context(config.tls) if config.tls is not None else None
        except WebConfigError as exc:
            raise WebConfigError(f"{self._config_file}: {exc}" if self._config_file else str(exc)) from None
        return _Loaded(config, context, file_print + tls_print)

    def _reload_if_changed(self) -> None:
        now_print = fingerprint(self._watched(self._loaded.config))
        if now_print == self._loaded.fingerprint or now_print == self._failed:
            return
        try:
            loaded = self._load_all()
            if (loaded.context is None) != (self._loaded.context is None):
                raise WebConfigError("switching between HTTP and HTTPS needs a restart of podbw")
        except WebConfigError as exc:
            self._failed = now_print
            self.reload_errors += 1
            self.last_reload_ok = False
            log.error("web config: %s; keeping the last good one", exc)
            return
        self._loaded, self._failed = loaded, None
        self.last_reload_ok = True
        log.info("web config reloaded%s", f" from {self._config_file}" if self._config_file else "")

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "podbw_web_config_last_reload_successful",
            "1 when the web config (file and certificates) last loaded fine, 0 when the last good one is kept.",
            value=1 if self.last_reload_ok else 0,
        )
        yield CounterMetricFamily(
            "podbw_web_config_reload_errors",
            "Changes of the web config or its certificates that failed to load.",
            value=self.reload_errors,
        )

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())
