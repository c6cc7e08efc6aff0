"""The real kubectl, pointed at a lab's Kubernetes API stand-in.

Looked for as `$PODBW_KUBECTL`, then `.tools/bin/kubectl` of this checkout (scripts/install.sh
puts it there), then PATH: on some machines /usr/bin/kubectl is a cloud SDK wrapper, so the
checkout's own comes before it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

import agent
from agent.lab import process
from agent.lab.errors import LabError

ENV_VAR = "PODBW_KUBECTL"
TIMEOUT_S = 10.0


def tools_kubectl() -> str:
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(agent.__file__)))
    return os.path.join(repo_root, ".tools", "bin", "kubectl")


def find_kubectl(environ: Mapping[str, str] = os.environ) -> str | None:
    """The kubectl to run, or None when there is none."""
    chosen = environ.get(ENV_VAR, "")
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    if os.access(tools_kubectl(), os.X_OK):
        return tools_kubectl()
    return shutil.which("kubectl", path=environ.get("PATH"))


def where_looked(environ: Mapping[str, str] = os.environ) -> str:
    """Why find_kubectl found none, for the demo's message."""
    chosen = environ.get(ENV_VAR, "")
    if chosen:
        return f"${ENV_VAR}={chosen} is not an executable"
    return f"not at {tools_kubectl()} nor on PATH; ${ENV_VAR} names another"


@dataclass(frozen=True)
class KubectlResult:
    command: str
    """As a user would type it: `kubectl --kubeconfig K ...`."""
    ok: bool
    stdout: str
    stderr: str

    def error_line(self) -> str:
        lines = (self.stderr or self.stdout).strip().splitlines()
        return lines[-1] if lines else "no output"


class RunsKubectl(Protocol):
    """What the demo needs of kubectl (tests script it)."""

    def run(self, args: Sequence[str]) -> KubectlResult: ...


@dataclass(frozen=True)
class Kubectl:
    path: str
    kubeconfig: str

    def command(self, args: Sequence[str]) -> str:
        return " ".join(["kubectl", "--kubeconfig", self.kubeconfig, *args])

    def run(self, args: Sequence[str], timeout_s: float = TIMEOUT_S) -> KubectlResult:
        """Never raises for kubectl's own failures: a missing binary or a timeout is a failed result."""
        try:
            done = process.run([self.path, "--kubeconfig", self.kubeconfig, *args], timeout_s=timeout_s, check=False)
        except LabError as err:
            return KubectlResult(self.command(args), False, "", str(err))
        return KubectlResult(
            self.command(args),
            done.returncode == 0,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
        )
