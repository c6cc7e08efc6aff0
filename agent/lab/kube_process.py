"""The lab's Kubernetes API stand-in as a detached process that outlives whoever started it.

`start` makes the credentials (once per lab), starts the server on the port it had before (a
free one the first time), waits until it listens, and (re)writes `<state_dir>/kubeconfig`. The
pid goes to a file in the state dir and is only trusted while /proc/<pid>/cmdline still names
this lab's state file, as for the CRI server.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import agent
from agent.lab import process
from agent.lab.config import LabConfig
from agent.lab.errors import LabError
from agent.lab.kube_pki import ensure_pki, write_kubeconfig
from agent.lab.kube_sync import read_synced

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


def running_pid(config: LabConfig) -> int | None:
    """Pid of this lab's API server if it runs."""
    try:
        with open(config.kube_pid_file, encoding="ascii") as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    cmdline = process.pid_cmdline(pid)
    if process.pid_alive(pid) and KUBE_SERVER_MODULE in cmdline and config.state_file in cmdline:
        return pid
    return None


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
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_ready_file(config))
    argv = [
        sys.executable, "-m", KUBE_SERVER_MODULE,
        "--state", config.state_file,
        "--dir", config.kube_dir,
        "--node-name", config.node_name,
        "--port", str(port(config) or 0),
        "--ready-file", _ready_file(config),
        "--bookmark-interval-s", str(settings.bookmark_interval_s),
        "--min-request-timeout-s", str(settings.min_request_timeout_s),
        "--log-level", settings.log_level,
    ]
    env = dict(os.environ)
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(agent.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, env.get("PYTHONPATH", "")) if p)
    with open(config.kube_log_file, "ab") as log_file:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, env=env, cwd="/",
        )
    with open(config.kube_pid_file, "w", encoding="ascii") as f:
        f.write(f"{proc.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not os.path.exists(_ready_file(config)):
        if proc.poll() is not None:
            _forget(config)
            raise LabError(f"Kubernetes API server exited with {proc.returncode}: {_log_tail(config)}")
        if time.monotonic() > deadline:
            stop(config, proc)
            raise LabError(f"Kubernetes API server did not listen in {START_TIMEOUT_S:g} s: {_log_tail(config)}")
        time.sleep(0.02)
    with open(_ready_file(config), encoding="ascii") as f:
        listening = int(f.read().strip())
    with open(_port_file(config), "w", encoding="ascii") as f:
        f.write(f"{listening}\n")
    write_kubeconfig(config.kubeconfig, f"https://127.0.0.1:{listening}", pki, config.node_name)
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
    for path in (config.kube_pid_file, _ready_file(config)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _log_tail(config: LabConfig, lines: int = 5) -> str:
    try:
        with open(config.kube_log_file, encoding="utf-8", errors="replace") as f:
            tail = f.read().strip().splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return " | ".join(tail) or "(empty log)"
