"""The real kubectl (scripts/install.sh puts it in .tools/bin) pointed at a lab's API stand-in."""

from __future__ import annotations

import subprocess
from pathlib import Path

from agent.lab.node import LabNode
from tests.tools import kubectl


class Kubectl:
    def __init__(self, lab: LabNode, cache_dir: Path) -> None:
        self.argv = [str(kubectl()), "--kubeconfig", lab.kubeconfig, "--cache-dir", str(cache_dir)]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.argv, *args], capture_output=True, text=True, timeout=60)

    def __call__(self, *args: str) -> str:
        """stdout of a command that must succeed and print nothing on stderr."""
        result = self.run(*args)
        assert result.returncode == 0 and result.stderr == "", (args, result.returncode, result.stderr)
        return result.stdout


def table(text: str) -> list[dict[str, str]]:
    """kubectl's columns, split where the header has two or more spaces."""
    header, *rows = text.rstrip("\n").split("\n")
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1 : i + 1] == " " + c and header[i - 2 : i] == "  ")]
    names = [header[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
    return [{n: row[a:b].strip() for n, a, b in zip(names, starts, starts[1:] + [None])} for row in rows]
