"""Calls to the API stand-in's own paths (/podbw-lab/...): failure injection and request
counters for tests, over the same verified TLS and token as any client."""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any

from agent.lab import kube_process
from agent.lab.config import LabConfig
from agent.lab.errors import LabError
from agent.lab.kube_pki import KubePki

ADMIN_TIMEOUT_S = 10.0


def admin_call(config: LabConfig, method: str, path: str) -> Any:
    """The decoded JSON answer of method path (e.g. POST /podbw-lab/compact)."""
    port = kube_process.port(config)
    if port is None or kube_process.running_pid(config) is None:
        raise LabError(f"the Kubernetes API server of lab {config.name!r} is not running")
    pki = KubePki(config.kube_dir)
    context = ssl.create_default_context(cafile=pki.ca_cert)
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=ADMIN_TIMEOUT_S, context=context)
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {pki.token()}", "Accept": "application/json"})
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as e:
        raise LabError(f"{method} {path} on lab {config.name!r}'s API server: {e}") from e
    finally:
        conn.close()
    if response.status != 200:
        raise LabError(f"{method} {path} on lab {config.name!r}'s API server: {response.status} {body[:200]!r}")
    return json.loads(body)
