"""The demo's midway limit change: `kubectl annotate` through the lab's Kubernetes API stand-in,
as a user would on a cluster; the agent's annotations file only when kubectl is missing or fails."""

from __future__ import annotations

import os
from typing import Callable

from agent.lab import demo_scenario as scenario
from agent.lab.kubectl import RunsKubectl, where_looked

VIA_KUBECTL = "kubectl annotate"
VIA_FILE = "annotations file"
INITIAL_ANNOTATIONS = "# podbw demo: no overrides (the demo writes one here only when kubectl cannot)\n"


def annotations_file(state_dir: str) -> str:
    return os.path.join(state_dir, "annotations.yaml")


def change_limit(kubectl: RunsKubectl | None, state_dir: str, show: Callable[[str], None]) -> str:
    """Make the change, show how (the command and its answer); returns VIA_KUBECTL or VIA_FILE."""
    show(
        f"changing {scenario.CHANGED_POD} {scenario.CHANGED_DIRECTION} limit "
        f"{scenario.LIMIT_BEFORE} -> {scenario.LIMIT_AFTER}"
    )
    if kubectl is not None:
        result = kubectl.run(scenario.annotate_args())
        if result.ok:
            show(f"$ {result.command}")
            show(result.stdout.strip())
            return VIA_KUBECTL
        why = f"`{result.command}` failed: {result.error_line()}"
    else:
        why = f"no kubectl ({where_looked()})"
    path = annotations_file(state_dir)
    show(f"{why}; writing the change to the agent's annotations file {path} instead")
    write_atomically(path, scenario.changed_annotations())
    return VIA_FILE


def write_atomically(path: str, text: str) -> None:
    # The agent watches the directory: a rename is one event with the whole new content.
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
