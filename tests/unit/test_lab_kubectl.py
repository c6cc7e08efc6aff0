"""Which kubectl the lab runs: $PODBW_KUBECTL, else the checkout's .tools/bin/kubectl, else PATH."""

from __future__ import annotations

import os
from pathlib import Path

from agent.lab.kubectl import find_kubectl, tools_kubectl, where_looked


def test_kubectl_is_the_env_choice_then_the_checkouts_then_path(tmp_path: Path) -> None:
    chosen = tmp_path / "my-kubectl"
    chosen.write_text("#!/bin/sh\n")
    chosen.chmod(0o755)
    on_path = tmp_path / "bin"
    on_path.mkdir()
    (on_path / "kubectl").write_text("#!/bin/sh\n")
    (on_path / "kubectl").chmod(0o755)

    assert find_kubectl({"PODBW_KUBECTL": str(chosen)}) == str(chosen)
    assert find_kubectl({"PODBW_KUBECTL": str(tmp_path / "missing")}) is None
    assert where_looked({"PODBW_KUBECTL": str(tmp_path / "missing")}) == f"$PODBW_KUBECTL={tmp_path / 'missing'} is not an executable"
    expected = tools_kubectl() if os.access(tools_kubectl(), os.X_OK) else str(on_path / "kubectl")
    assert find_kubectl({"PATH": str(on_path)}) == expected
