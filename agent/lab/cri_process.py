"""The lab's CRI server as a detached process that outlives whoever started it.

Its pid goes to a file in the state dir, so `down` from any later process can stop it; the pid
is only trusted when /proc/<pid>/cmdline still names this lab's state file (pids get reused).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import time

import agent
from agent.lab import process
from agent.lab.config import LabConfig
from agent.lab.errors import LabError

CRI_SERVER_MODULE = "agent.lab.cri_server"
START_TIMEOUT_S = 5.0


def cri_server_available() -> bool:
    return importlib.util.find_spec(CRI_SERVER_MODULE) is not None


def running_pid(config: LabConfig) -> int | None:
    """Pid of this lab's CRI server if it runs."""
    try:
        with open(config.cri_pid_file, encoding="ascii") as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    if process.pid_alive(pid) and _is_ours(pid, config):
        return pid
    return None


def _is_ours(pid: int, config: LabConfig) -> bool:
    cmdline = process.pid_cmdline(pid)
    return CRI_SERVER_MODULE in cmdline and config.state_file in cmdline


def start(config: LabConfig, pod_events: bool, runtime: str) -> subprocess.Popen[bytes]:
    """Start the server and wait until its socket exists."""
    if not cri_server_available():
        raise LabError(f"{CRI_SERVER_MODULE} is not installed; cannot serve CRI on {config.socket}")
    if running_pid(config) is not None:
        raise LabError(f"the CRI server of lab {config.name!r} is already running")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(config.socket)  # left by a server that was killed
    os.makedirs(os.path.dirname(config.socket), exist_ok=True)
    argv = [
        sys.executable, "-m", CRI_SERVER_MODULE,
        "--state", config.state_file,
        "--socket", config.socket,
        "--pod-events" if pod_events else "--no-pod-events",
        "--runtime", runtime,
    ]
    env = dict(os.environ)
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(agent.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, env.get("PYTHONPATH", "")) if p)
    with open(config.cri_log_file, "ab") as log_file:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, env=env, cwd="/",
        )
    with open(config.cri_pid_file, "w", encoding="ascii") as f:
        f.write(f"{proc.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not os.path.exists(config.socket):
        if proc.poll() is not None:
            _forget(config)
            raise LabError(f"CRI server exited with {proc.returncode}: {_log_tail(config)}")
        if time.monotonic() > deadline:
            stop(config, proc)
            raise LabError(f"CRI server made no socket at {config.socket} in {START_TIMEOUT_S:g} s: {_log_tail(config)}")
        time.sleep(0.02)
    return proc


def stop(config: LabConfig, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Stop the server (ours or started by another process); True when one was running."""
    pid = running_pid(config)
    if proc is not None and proc.poll() is None:
        pid = proc.pid
    if pid is not None:
        process.terminate(pid)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)  # reap it, or Popen warns that it still runs
    _forget(config)
    return pid is not None


def _forget(config: LabConfig) -> None:
    for path in (config.cri_pid_file, config.socket):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _log_tail(config: LabConfig, lines: int = 5) -> str:
    try:
        with open(config.cri_log_file, encoding="utf-8", errors="replace") as f:
            tail = f.read().strip().splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return " | ".join(tail) or "(empty log)"
