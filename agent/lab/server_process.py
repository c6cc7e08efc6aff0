"""A lab server (the CRI or the Kubernetes API stand-in) as a detached process that outlives
whoever started it.

Its pid goes to a file in the state dir, so `down` from any later process can stop it; the pid
is only trusted while /proc/<pid>/cmdline still names the server's module and this lab's state
file (pids get reused).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Sequence

import agent
from agent.lab import process
from agent.lab.errors import LabError


def child_env() -> dict[str, str]:
    """This environment, with this checkout first on PYTHONPATH: a child `python -m agent...`
    runs the same code as its parent, installed or not."""
    env = dict(os.environ)
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(agent.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, env.get("PYTHONPATH", "")) if p)
    return env


@dataclass(frozen=True)
class ServerProcess:
    what: str
    """For messages: `CRI server`."""
    module: str
    """Run as `python -m module`."""
    state_file: str
    """The lab's state file; the server's command line names it."""
    pid_file: str
    log_file: str
    ready_path: str
    """The server makes it once it serves (its socket, or a file); removed when it stops."""

    def running_pid(self) -> int | None:
        """Pid of this lab's server if it runs."""
        try:
            with open(self.pid_file, encoding="ascii") as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        cmdline = process.pid_cmdline(pid)
        if process.pid_alive(pid) and self.module in cmdline and self.state_file in cmdline:
            return pid
        return None

    def start(self, args: Sequence[str], timeout_s: float) -> subprocess.Popen[bytes]:
        """Start `python -m module args` and wait until ready_path exists."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.ready_path)  # left by a server that was killed
        with open(self.log_file, "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *args],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, env=child_env(), cwd="/",
            )
        with open(self.pid_file, "w", encoding="ascii") as f:
            f.write(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout_s
        while not os.path.exists(self.ready_path):
            if proc.poll() is not None:
                self._forget()
                raise LabError(f"{self.what} exited with {proc.returncode}: {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop(proc)
                raise LabError(f"{self.what} was not ready ({self.ready_path}) in {timeout_s:g} s: {self._log_tail()}")
            time.sleep(0.02)
        return proc

    def stop(self, proc: subprocess.Popen[bytes] | None = None) -> bool:
        """Stop the server (ours or started by another process); True when one was running."""
        pid = self.running_pid()
        if proc is not None and proc.poll() is None:
            pid = proc.pid
        if pid is not None:
            process.terminate(pid)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1.0)  # reap it, or Popen warns that it still runs
        self._forget()
        return pid is not None

    def _forget(self) -> None:
        for path in (self.pid_file, self.ready_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            with open(self.log_file, encoding="utf-8", errors="replace") as f:
                tail = f.read().strip().splitlines()[-lines:]
        except OSError:
            return "(no log)"
        return " | ".join(tail) or "(empty log)"
