"""The lab's CRI server as a detached process that outlives whoever started it
(agent.lab.server_process)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess

from agent.lab.config import LabConfig
from agent.lab.errors import LabError
from agent.lab.server_process import ServerProcess

CRI_SERVER_MODULE = "agent.lab.cri_server"
START_TIMEOUT_S = 5.0


def cri_server_available() -> bool:
    return importlib.util.find_spec(CRI_SERVER_MODULE) is not None


def _server(config: LabConfig) -> ServerProcess:
    # Ready once its socket exists; a socket left by a killed server is removed before a start.
    return ServerProcess(
        "CRI server", CRI_SERVER_MODULE, config.state_file, config.cri_pid_file, config.cri_log_file, config.socket
    )


def running_pid(config: LabConfig) -> int | None:
    """Pid of this lab's CRI server if it runs."""
    return _server(config).running_pid()


def start(config: LabConfig, pod_events: bool, runtime: str) -> subprocess.Popen[bytes]:
    """Start the server and wait until its socket exists."""
    if not cri_server_available():
        raise LabError(f"{CRI_SERVER_MODULE} is not installed; cannot serve CRI on {config.socket}")
    if running_pid(config) is not None:
        raise LabError(f"the CRI server of lab {config.name!r} is already running")
    os.makedirs(os.path.dirname(config.socket), exist_ok=True)
    args = [
        "--state", config.state_file,
        "--socket", config.socket,
        "--pod-events" if pod_events else "--no-pod-events",
        "--runtime", runtime,
    ]
    return _server(config).start(args, START_TIMEOUT_S)


def stop(config: LabConfig, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Stop the server (ours or started by another process); True when one was running."""
    return _server(config).stop(proc)
