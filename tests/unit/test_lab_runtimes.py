"""The lab's runtime flavours: pin names, identities, and verbose info the agent's parser reads
as it reads the real runtime's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent.cri.info import netns_path_from_info
from agent.lab.cri_server import LabSandbox
from agent.lab.errors import LabError
from agent.lab.runtimes import CONTAINERD, CRIO, runtime_named
from agent.lab.sandbox_info import verbose_info

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.mark.parametrize(("runtime", "pattern"), [(CRIO, UUID), (CONTAINERD, "cni-" + UUID)], ids=["crio", "containerd"])
def test_pins_are_named_as_the_runtime_names_them(runtime, pattern: str) -> None:
    names = {runtime.pin_name() for _ in range(5)}
    assert len(names) == 5 and all(re.fullmatch(pattern, name) for name in names), names


def test_identities() -> None:
    assert (runtime_named("crio").runtime_name, runtime_named("containerd").runtime_name) == ("cri-o", "containerd")
    with pytest.raises(LabError, match="unknown runtime 'podman': use one of crio, containerd"):
        runtime_named("podman")


def sandbox(netns_path: str, host_network: bool = False) -> LabSandbox:
    return LabSandbox.from_record({
        "sandbox_id": "a" * 64, "uid": "u-1", "namespace": "shop", "name": "web", "attempt": 0,
        "netns_path": netns_path, "host_network": host_network, "ip": "" if host_network else "10.85.0.5",
        "annotations": {"kubernetes.io/ingress-bandwidth": "10M"}, "labels": {"app": "web"},
    })


@pytest.fixture
def pin(tmp_path: Path) -> str:
    path = tmp_path / "cni-5f0c2a7e-1b2d-8e3f-4a5b-6c7d8e9f0a1b"
    path.write_text("")
    return str(path)


@pytest.mark.parametrize(
    ("runtime", "host_network", "expected"),
    [("crio", False, "pin"), ("crio", True, "pin"), ("containerd", False, "pin"), ("containerd", True, None)],
    ids=["crio-pod", "crio-host-network", "containerd-pod", "containerd-host-network"],
)
def test_the_agents_parser_reads_the_lab_info(pin: str, runtime: str, host_network: bool, expected) -> None:
    # CRI-O pins host-network sandboxes (to the host's namespace); containerd has no pin for them.
    path = "" if runtime == "containerd" and host_network else pin
    info = verbose_info(runtime, sandbox(path, host_network))
    assert netns_path_from_info(info) == (pin if expected == "pin" else None)


def test_containerd_info_has_containerds_layout(pin: str) -> None:
    document = json.loads(verbose_info("containerd", sandbox(pin))["info"])
    assert document["netNamespaceClosed"] is False
    assert document["sandboxMetadata"]["Metadata"]["NetNSPath"] == pin
    assert document["config"]["metadata"] == {"name": "web", "uid": "u-1", "namespace": "shop", "attempt": 0}
    assert {"type": "network", "path": pin} in document["runtimeSpec"]["linux"]["namespaces"]
    host = json.loads(verbose_info("containerd", sandbox("", host_network=True))["info"])
    assert host["config"]["linux"]["security_context"]["namespace_options"] == {"network": 2}
    assert "network" not in {entry["type"] for entry in host["runtimeSpec"]["linux"]["namespaces"]}


def test_containerd_reports_a_removed_pin_as_closed(pin: str) -> None:
    Path(pin).unlink()
    info = verbose_info("containerd", sandbox(pin))
    assert json.loads(info["info"])["netNamespaceClosed"] is True
    assert netns_path_from_info(info) is None


@pytest.mark.parametrize(("argv", "expected"), [([], "crio"), (["--runtime", "containerd"], "containerd")])
def test_lab_up_takes_the_runtime_and_defaults_to_crio(argv: list[str], expected: str) -> None:
    import argparse

    from agent.lab.commands import add_lab_parser

    parser = argparse.ArgumentParser()
    add_lab_parser(parser.add_subparsers())
    assert parser.parse_args(["lab", "up", *argv]).runtime == expected
