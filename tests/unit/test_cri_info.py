"""netns_path_from_info on CRI-O's verbose info: good documents, absent data, broken data."""

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
    ],
    ids=["no-info-key", "other-key", "empty-doc", "null-spec", "no-linux", "no-namespaces", "null-namespaces"],
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
