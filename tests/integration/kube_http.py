"""Raw HTTPS to the lab's Kubernetes API stand-in, configured from its kubeconfig only (server,
CA data, token), as a client in a cluster would be; and a watch reader on a thread."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import queue
import socket
import ssl
import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit

import yaml


class KubeHttp:
    def __init__(self, kubeconfig_path: str) -> None:
        with open(kubeconfig_path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
        cluster = config["clusters"][0]["cluster"]
        url = urlsplit(cluster["server"])
        self.host, self.port = url.hostname or "", url.port or 443
        self.ca_pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
        self.token = config["users"][0]["user"]["token"]
        self.context = ssl.create_default_context(cadata=self.ca_pem)

    def connection(self, timeout_s: float = 10.0, context: ssl.SSLContext | None = None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, timeout=timeout_s, context=context or self.context)

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                token: str | None = "", headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, decoded JSON body); token "" means the kubeconfig's, None means none."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token or self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = content_type
        conn = self.connection()
        try:
            conn.request(method, path, body=data, headers=all_headers)
            response = conn.getresponse()
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
        finally:
            conn.close()

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    def watch(self, path: str) -> WatchReader:
        return WatchReader(self, path)


class WatchReader:
    """Reads a watch's newline-delimited events on a thread; close() ends it."""

    def __init__(self, api: KubeHttp, path: str) -> None:
        self.conn = api.connection(timeout_s=60.0)
        self.conn.request("GET", path, headers={"Authorization": f"Bearer {api.token}", "Accept": "application/json"})
        self._sock = self.conn.sock
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self.response:
                if line.strip():
                    self.events.put(json.loads(line))
        except (OSError, ValueError, http.client.HTTPException):
            pass
        finally:
            self.ended.set()
            self.events.put(None)

    def next_event(self, timeout_s: float = 10.0) -> dict[str, Any] | None:
        """The next event, or None when the stream ended; fails after timeout_s."""
        try:
            return self.events.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"no watch event in {timeout_s:g} s") from None

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The first event matching predicate, and the ones before it."""
        deadline = time.monotonic() + timeout_s
        skipped = []
        while True:
            event = self.next_event(max(0.0, deadline - time.monotonic()))
            if event is None:
                raise AssertionError(f"the watch ended without the event; saw {[e['type'] for e in skipped]}")
            if predicate(event):
                return event, skipped
            skipped.append(event)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread; close() alone would not
        self._thread.join(timeout=5)
        self.conn.close()  # after the reader ended: http.client's cleanup is not thread-safe
