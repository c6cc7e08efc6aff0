"""The lab's Kubernetes API stand-in as a detached process that outlives whoever started it.

`start` makes the credentials (once per lab), starts the server on the port it had before (a
free one the first time), waits until it listens, and (re)writes `<state_dir>/kubeconfig`. The
process is an agent.lab.server_process.ServerProcess, as the CRI server's.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass

from agent.lab.config import LabConfig
from agent.lab.errors import LabError
from agent.lab.kube_pki import ensure_pki, write_kubeconfig
from agent.lab.kube_sync import read_synced
from agent.lab.server_process import ServerProcess

KUBE_SERVER_MODULE = "agent.lab.kube_server"
START_TIMEOUT_S = 10.0
SYNC_WAIT_S = 2.0


@dataclass(frozen=True)
class ApiServerSettings:
    bookmark_interval_s: float = 5.0
    """Seconds between watch bookmarks (a real apiserver sends one about every minute)."""
    min_request_timeout_s: float = 300.0
    """A watch without timeoutSeconds ends after this × [1, 2) s (the apiserver's default is 1800)."""
    log_level: str = "info"
    """debug logs every request to <state_dir>/kube-api.log."""


def _port_file(config: LabConfig) -> str:
    return os.path.join(config.kube_dir, "port")


def _ready_file(config: LabConfig) -> str:
    return os.path.join(config.kube_dir, "ready")


def wait_synced(config: LabConfig, timeout_s: float = SYNC_WAIT_S) -> bool:
    """Wait until a running server has applied the current state file (a pod the lab just added
    or deleted is then in the API); False when it did not within timeout_s or does not run."""
    try:
        st = os.stat(config.state_file)
    except FileNotFoundError:
        return False
    synced_path = os.path.join(config.kube_dir, "synced")
    deadline = time.monotonic() + timeout_s
    while running_pid(config) is not None:
        synced = read_synced(synced_path)
        # inode: this very file; a later mtime: a newer file, written after ours, was applied
        if synced is not None and (synced[0] == st.st_ino or synced[1] > st.st_mtime_ns):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return False


def _server(config: LabConfig) -> ServerProcess:
    # The server writes its ready file (holding its port) once it listens.
    return ServerProcess(
        "Kubernetes API server", KUBE_SERVER_MODULE, config.state_file, config.kube_pid_file, config.kube_log_file,
        _ready_file(config),
    )


def running_pid(config: LabConfig) -> int | None:
    """Pid of this lab's API server if it runs."""
    return _server(config).running_pid()


def port(config: LabConfig) -> int | None:
    """The port the server listens on (or last listened on)."""
    try:
        with open(_port_file(config), encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def server_url(config: LabConfig) -> str | None:
    listening = port(config)
    return f"https://127.0.0.1:{listening}" if listening else None


def start(config: LabConfig, settings: ApiServerSettings = ApiServerSettings()) -> subprocess.Popen[bytes]:
    if running_pid(config) is not None:
        raise LabError(f"the Kubernetes API server of lab {config.name!r} is already running")
    pki = ensure_pki(config.kube_dir, f"podbw lab {config.name} CA")
    args = [
        "--state", config.state_file,
        "--dir", config.kube_dir,
        "--node-name", config.node_name,
        "--port", str(port(config) or 0),
        "--ready-file", _ready_file(config),
        "--bookmark-interval-s", str(settings.bookmark_interval_s),
        "--min-request-timeout-s", str(settings.min_request_timeout_s),
        "--log-level", settings.log_level,
    ]
    proc = _server(config).start(args, START_TIMEOUT_S)
    with open(_ready_file(config), encoding="ascii") as f:
        listening = int(f.read().strip())
    with open(_port_file(config), "w", encoding="ascii") as f:
        f.write(f"{listening}\n")
    write_kubeconfig(config.kubeconfig, f"https://127.0.0.1:{listening}", pki, config.node_name)
    return proc


def stop(config: LabConfig, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Stop the server (ours or started by another process); True when one was running."""
    return _server(config).stop(proc)
