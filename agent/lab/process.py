"""Running helper programs (unshare, ip, CNI plugins): the only subprocess use in agent/."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from typing import Mapping, Sequence

from agent.lab.errors import LabError

log = logging.getLogger(__name__)


def run(
    argv: Sequence[str],
    *,
    input_bytes: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv to completion; with check, a non-zero exit raises LabError with its stderr."""
    log.debug("run %s", " ".join(argv))
    try:
        proc = subprocess.run(
            list(argv), input=input_bytes, env=dict(env) if env is not None else None,
            capture_output=True, timeout=timeout_s, check=False,
        )
    except FileNotFoundError as e:
        raise LabError(f"{argv[0]}: not found (is it installed?)") from e
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{' '.join(argv)}: no answer in {timeout_s:g} s") from e
    if check and proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip() or proc.stdout.decode(errors="replace").strip()
        raise LabError(f"{' '.join(argv)} failed (exit {proc.returncode}): {detail}")
    return proc


def pid_alive(pid: int) -> bool:
    """True while pid runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state letter follows the parenthesised command name, which may itself hold ')'.
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] not in ("Z", "X")


def pid_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def terminate(pid: int, timeout_s: float = 5.0) -> None:
    """SIGTERM, wait, then SIGKILL; reaps pid when it is our child."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            _reap(pid)
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            _reap(pid)
            if not pid_alive(pid):
                return
            time.sleep(0.02)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
