"""netns_path_from_info on CRI-O's and containerd's verbose info: good documents, absent data,
broken data."""

from __future__ import annotations

import json

import pytest

from agent.cri.errors import CriError, CriInfoError
from agent.cri.info import MAX_INFO_BYTES, netns_path_from_info

NETNS = "/var/run/netns/4b1e6c1a-7f4e-4a0e-9b7a-2f0c6d1e9a11"


def _info(document: object) -> dict[str, str]:
    return {"info": json.dumps(document)}


def _crio_document(namespaces: list[dict]) -> dict:
    """Shaped like CRI-O 1.31's verbose PodSandboxStatus info (trimmed)."""
    return {
        "image": "registry.k8s.io/pause:3.10",
        "pid": 4242,
        "runtimeSpec": {
            "ociVersion": "1.0.2-dev",
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["/pause"]},
            "linux": {
                "namespaces": namespaces,
                "cgroupsPath": "kubepods-besteffort.slice:crio:abc",
            },
            "annotations": {"io.kubernetes.cri-o.SandboxID": "abc"},
        },
    }


CONTAINERD_NETNS = "/var/run/netns/cni-5f0c2a7e-1b2d-8e3f-4a5b-6c7d8e9f0a1b"
SANDBOX_ID = "9d3c" + "0" * 60


def _containerd_config(host_network: bool) -> dict:
    """PodSandboxConfig as containerd's Go JSON writes it (proto field names, enums as numbers)."""
    namespace_options = {"network": 2, "pid": 1} if host_network else {"pid": 1}
    return {
        "metadata": {"name": "web-1", "uid": "4b1e6c1a-7f4e", "namespace": "shop"},
        "hostname": "web-1",
        "log_directory": "/var/log/pods/shop_web-1_4b1e6c1a-7f4e",
        "labels": {"app": "web", "io.kubernetes.pod.name": "web-1"},
        "annotations": {"kubernetes.io/ingress-bandwidth": "10M"},
        "linux": {
            "cgroup_parent": "/kubepods/besteffort/pod4b1e6c1a-7f4e",
            "security_context": {"namespace_options": namespace_options, "seccomp": {"profile_type": 1}},
        },
    }


def _containerd_document(version: str = "2.1", host_network: bool = False, closed: bool = False,
                         runtime_spec: bool = True) -> dict:
    """Shaped like containerd's SandboxInfo JSON (trimmed): 1.7's pkg/cri/server/sandbox_status.go,
    2.x's internal/cri/server/podsandbox/types/sandbox_info.go. Host-network sandboxes get no
    netns (no network entry in the spec, empty NetNSPath) and no netNamespaceClosed check."""
    netns = "" if host_network else CONTAINERD_NETNS
    namespaces = [{"type": "pid"}, {"type": "ipc"}, {"type": "mount"}]
    if not host_network:
        namespaces[2:2] = [{"type": "uts"}]
        namespaces.append({"type": "network", "path": netns})
    cni_result = None if host_network else {
        "Interfaces": {"eth0": {"IPConfigs": [{"IP": "10.88.0.5", "Gateway": "10.88.0.1"}],
                                "Mac": "5a:2b:8c:11:22:33", "Sandbox": netns}},
        "DNS": [{}, {}],
        "Routes": [{"dst": "0.0.0.0/0"}],
    }
    document = {
        "pid": 4242,
        "processStatus": "running",
        "netNamespaceClosed": closed,
        "image": "registry.k8s.io/pause:3.10",
        "snapshotKey": SANDBOX_ID,
        "snapshotter": "overlayfs",
        "runtimeType": "io.containerd.runc.v2",
        "runtimeOptions": {"systemd_cgroup": True},
        "config": _containerd_config(host_network),
        "runtimeSpec": {
            "ociVersion": "1.2.0",
            "process": {"user": {"uid": 65535, "gid": 65535}, "args": ["/pause"], "cwd": "/"},
            "root": {"path": "rootfs", "readonly": True},
            "annotations": {"io.kubernetes.cri.container-type": "sandbox",
                            "io.kubernetes.cri.sandbox-id": SANDBOX_ID},
            "linux": {"cgroupsPath": "/kubepods/besteffort/pod4b1e6c1a-7f4e/" + SANDBOX_ID,
                      "namespaces": namespaces, "maskedPaths": ["/proc/kcore"]},
        } if runtime_spec else None,
        "cniResult": cni_result,
    }
    if version.startswith("1."):
        document["runtimeHandler"] = ""
    else:
        document["sandboxMetadata"] = {"Version": "v1", "Metadata": {
            "ID": SANDBOX_ID, "Name": "web-1_shop_4b1e6c1a-7f4e_0", "Config": _containerd_config(host_network),
            "NetNSPath": netns, "IP": "" if host_network else "10.88.0.5", "AdditionalIPs": None,
            "RuntimeHandler": "", "CNIResult": cni_result, "ProcessLabel": ""}}
    return document


def _deleted_containerd_document() -> dict:
    """containerd 2.x's toDeletedCRISandboxInfo: the shim is gone, no runtimeSpec."""
    document = _containerd_document(closed=True, runtime_spec=False)
    document["processStatus"] = "deleted"
    for key in ("image", "snapshotKey", "snapshotter", "runtimeType", "runtimeOptions", "runtimeSpec"):
        document.pop(key)
    return document


CRIO_HOST_PIN = "/var/run/netns/0c9d7e2b-5a4f-4e1d-8c3b-1a2b3c4d5e6f"
DOCUMENTS = {
    "cri-o 1.31, pod network": (_crio_document([{"type": "pid"}, {"type": "network", "path": NETNS}]), NETNS),
    # CRI-O pins the host's namespace too; the status's NODE mode is what says host network.
    "cri-o 1.31, host network": (_crio_document([{"type": "network", "path": CRIO_HOST_PIN}]), CRIO_HOST_PIN),
    "containerd 2.1, pod network": (_containerd_document(), CONTAINERD_NETNS),
    "containerd 2.1, host network": (_containerd_document(host_network=True), None),
    "containerd 2.1, netns closed": (_containerd_document(closed=True), None),
    "containerd 2.1, no runtimeSpec yet": (_containerd_document(runtime_spec=False), CONTAINERD_NETNS),
    "containerd 2.1, shim gone": (_deleted_containerd_document(), None),
    "containerd 1.7, pod network": (_containerd_document(version="1.7"), CONTAINERD_NETNS),
    "containerd 1.7, host network": (_containerd_document(version="1.7", host_network=True), None),
    "containerd 1.7, netns closed": (_containerd_document(version="1.7", closed=True), None),
}


@pytest.mark.parametrize("case", DOCUMENTS, ids=str)
def test_runtime_documents_give_the_pinned_namespace(case: str) -> None:
    document, expected = DOCUMENTS[case]
    assert netns_path_from_info(_info(document)) == expected


def test_runtime_spec_wins_over_containerd_metadata() -> None:
    document = _containerd_document()
    document["sandboxMetadata"]["Metadata"]["NetNSPath"] = "/var/run/netns/cni-other"
    assert netns_path_from_info(_info(document)) == CONTAINERD_NETNS


def test_crio_info_gives_the_network_namespace_path() -> None:
    info = _info(_crio_document([
        {"type": "pid"},
        {"type": "network", "path": NETNS},
        {"type": "ipc", "path": "/var/run/ipcns/x"},
        {"type": "uts", "path": "/var/run/utsns/x"},
    ]))
    assert netns_path_from_info(info) == NETNS


def test_first_network_entry_with_a_path_wins() -> None:
    info = _info(_crio_document([{"type": "network"}, {"type": "network", "path": NETNS},
                                 {"type": "network", "path": "/other"}]))
    assert netns_path_from_info(info) == NETNS


@pytest.mark.parametrize(
    "namespaces",
    [
        [],
        [{"type": "ipc"}, {"type": "uts"}],
        [{"type": "network"}],
        [{"type": "network", "path": ""}],
        [{"type": "network", "path": None}],
        [{"path": NETNS}],
        [{"type": "Network", "path": NETNS}],
    ],
    ids=["empty", "no-network", "network-without-path", "empty-path", "null-path", "no-type", "wrong-case"],
)
def test_no_usable_network_entry_gives_none(namespaces: list[dict]) -> None:
    assert netns_path_from_info(_info(_crio_document(namespaces))) is None


@pytest.mark.parametrize(
    "info",
    [
        {},
        {"other": "x"},
        _info({}),
        _info({"runtimeSpec": None}),
        _info({"runtimeSpec": {}}),
        _info({"runtimeSpec": {"linux": {}}}),
        _info({"runtimeSpec": {"linux": {"namespaces": None}}}),
        _info({"netNamespaceClosed": False}),
        _info({"sandboxMetadata": None}),
        _info({"sandboxMetadata": {"Version": "v1"}}),
        _info({"sandboxMetadata": {"Metadata": {"NetNSPath": ""}}}),
    ],
    ids=["no-info-key", "other-key", "empty-doc", "null-spec", "no-linux", "no-namespaces", "null-namespaces",
         "netns-open", "null-metadata", "no-inner-metadata", "empty-netns-path"],
)
def test_missing_keys_give_none(info: dict[str, str]) -> None:
    assert netns_path_from_info(info) is None


@pytest.mark.parametrize(
    "text",
    ["", "{", "not json", '{"runtimeSpec": }', "\ud800", '{"a": 1} trailing'],
    ids=["empty", "truncated", "text", "bad-value", "lone-surrogate", "trailing"],
)
def test_malformed_json_raises_info_error(text: str) -> None:
    with pytest.raises(CriInfoError, match="verbose info: not valid JSON"):
        netns_path_from_info({"info": text})


@pytest.mark.parametrize(
    ("info", "where"),
    [
        ({"info": 5}, "'info' is int"),
        ({"info": b"{}"}, "'info' is bytes"),
        (_info([]), "top level is an array"),
        (_info("string"), "top level is a string"),
        (_info(None), "top level is null"),
        (_info({"runtimeSpec": []}), "info.runtimeSpec is an array"),
        (_info({"runtimeSpec": {"linux": "x"}}), "runtimeSpec.linux is a string"),
        (_info({"runtimeSpec": {"linux": {"namespaces": {"type": "network"}}}}),
         "runtimeSpec.linux.namespaces is an object"),
        (_info({"runtimeSpec": {"linux": {"namespaces": ["network"]}}}),
         r"namespaces\[0\] is a string"),
        (_info({"runtimeSpec": {"linux": {"namespaces": [{"type": "network", "path": 7}]}}}),
         r"namespaces\[0\]\.path is a number"),
        (_info({"runtimeSpec": {"linux": {"namespaces": [{"type": "network", "path": True}]}}}),
         r"namespaces\[0\]\.path is a boolean"),
        (_info({"netNamespaceClosed": "false"}), "info.netNamespaceClosed is a string, expected a boolean"),
        (_info({"netNamespaceClosed": 1}), "info.netNamespaceClosed is a number, expected a boolean"),
        (_info({"sandboxMetadata": []}), "info.sandboxMetadata is an array, expected an object"),
        (_info({"sandboxMetadata": {"Metadata": "x"}}), "sandboxMetadata.Metadata is a string, expected an object"),
        (_info({"sandboxMetadata": {"Metadata": {"NetNSPath": 5}}}),
         "sandboxMetadata.Metadata.NetNSPath is a number, expected a string"),
    ],
)
def test_wrong_types_raise_info_error(info: dict, where: str) -> None:
    with pytest.raises(CriInfoError, match=where):
        netns_path_from_info(info)


def test_not_a_mapping_raises_info_error() -> None:
    with pytest.raises(CriInfoError, match="expected a map"):
        netns_path_from_info(["info"])  # type: ignore[arg-type]


def test_huge_input_is_refused_before_parsing() -> None:
    padding = "x" * MAX_INFO_BYTES
    info = _info({"pad": padding, "runtimeSpec": {"linux": {"namespaces": [{"type": "network", "path": NETNS}]}}})
    with pytest.raises(CriInfoError, match="larger than"):
        netns_path_from_info(info)


def test_huge_input_counts_bytes_not_characters() -> None:
    # 1.5 Mi characters of 3-byte UTF-8 is 4.5 MiB on the wire.
    text = json.dumps({"pad": "\u20ac" * (MAX_INFO_BYTES // 2 - 10)}, ensure_ascii=False)
    assert len(text) < MAX_INFO_BYTES
    with pytest.raises(CriInfoError, match="larger than"):
        netns_path_from_info({"info": text})


def test_input_just_under_the_cap_is_parsed() -> None:
    document = _crio_document([{"type": "network", "path": NETNS}])
    document["pad"] = ""
    overhead = len(json.dumps(document))
    document["pad"] = "x" * (MAX_INFO_BYTES - overhead)
    text = json.dumps(document)
    assert len(text) == MAX_INFO_BYTES
    assert netns_path_from_info({"info": text}) == NETNS


@pytest.mark.parametrize("opener,closer", [("[", "]"), ('{"a":', "}")], ids=["arrays", "objects"])
def test_deep_nesting_raises_info_error(opener: str, closer: str) -> None:
    depth = 200_000
    with pytest.raises(CriInfoError, match="nested too deeply"):
        netns_path_from_info({"info": opener * depth + "0" + closer * depth})


def test_info_error_is_a_cri_error_with_one_line_message() -> None:
    with pytest.raises(CriError) as caught:
        netns_path_from_info({"info": '{\n"a": \n}'})
    assert "\n" not in str(caught.value)
