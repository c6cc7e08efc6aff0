"""A kubectl stand-in for unit tests of the demo: scripted answers, no process."""

from __future__ import annotations

from typing import Sequence

from agent.lab.kubectl import KubectlResult


class ScriptedKubectl:
    """Answers each run with the next (ok, stdout, stderr); the last one repeats."""

    def __init__(self, answers: Sequence[tuple[bool, str, str]]) -> None:
        self.answers = list(answers)
        self.calls: list[list[str]] = []

    def run(self, args: Sequence[str]) -> KubectlResult:
        self.calls.append(list(args))
        ok, out, err = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return KubectlResult(" ".join(["kubectl", "--kubeconfig", "/lab/kubeconfig", *args]), ok, out, err)
