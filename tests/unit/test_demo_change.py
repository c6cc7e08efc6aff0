"""The demo's midway change: kubectl annotate when it works, the annotations file otherwise."""

from __future__ import annotations

from pathlib import Path

import yaml

from agent.lab.demo_change import VIA_FILE, VIA_KUBECTL, annotations_file, change_limit
from tests.unit.kubectl_script import ScriptedKubectl

ANNOTATE = "kubectl --kubeconfig /lab/kubeconfig annotate pod -n shop web kubernetes.io/ingress-bandwidth=40M --overwrite"


def test_kubectl_annotate_makes_the_change_and_is_shown(tmp_path: Path) -> None:
    shown: list[str] = []
    kubectl = ScriptedKubectl([(True, "pod/web annotated\n", "")])
    assert change_limit(kubectl, str(tmp_path), shown.append) == VIA_KUBECTL
    assert kubectl.calls == [["annotate", "pod", "-n", "shop", "web", "kubernetes.io/ingress-bandwidth=40M", "--overwrite"]]
    assert shown == ["changing shop/web ingress limit 20M -> 40M", f"$ {ANNOTATE}", "pod/web annotated"]
    assert not Path(annotations_file(str(tmp_path))).exists()


def test_a_failing_kubectl_falls_back_to_the_file_and_says_why(tmp_path: Path) -> None:
    shown: list[str] = []
    kubectl = ScriptedKubectl([(False, "", "Error from server (NotFound): pods \"web\" not found\n")])
    assert change_limit(kubectl, str(tmp_path), shown.append) == VIA_FILE
    path = annotations_file(str(tmp_path))
    assert shown[1] == (
        f"`{ANNOTATE}` failed: Error from server (NotFound): pods \"web\" not found; "
        f"writing the change to the agent's annotations file {path} instead"
    )
    assert yaml.safe_load(Path(path).read_text()) == {"shop/web": {"kubernetes.io/ingress-bandwidth": "40M"}}


def test_no_kubectl_falls_back_to_the_file(tmp_path: Path) -> None:
    shown: list[str] = []
    assert change_limit(None, str(tmp_path), shown.append) == VIA_FILE
    assert shown[1].startswith("no kubectl (")
    assert shown[1].endswith(f"writing the change to the agent's annotations file {annotations_file(str(tmp_path))} instead")
    assert Path(annotations_file(str(tmp_path))).exists()
