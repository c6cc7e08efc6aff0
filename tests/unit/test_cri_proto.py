"""The CRI subset in agent/cri/runtime.proto: upstream field numbers, round trips, skipping of
fields we don't declare, and the committed stubs being what protoc makes of the proto today."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.message import DecodeError

from agent.cri import runtime_pb2 as pb
from agent.cri.generate import GENERATED_FILES, generated_sources
from tests.unit.protobuf_wire import field, varint

# kubernetes/cri-api pkg/apis/runtime/v1/api.proto, as tabled in FACTS.md.
UPSTREAM_FIELDS = {
    "VersionRequest": {"version": 1},
    "VersionResponse": {"version": 1, "runtime_name": 2, "runtime_version": 3, "runtime_api_version": 4},
    "ListPodSandboxRequest": {"filter": 1},
    "PodSandboxFilter": {"id": 1, "state": 2, "label_selector": 3},
    "PodSandboxStateValue": {"state": 1},
    "ListPodSandboxResponse": {"items": 1},
    "PodSandbox": {"id": 1, "metadata": 2, "state": 3, "created_at": 4, "labels": 5,
                   "annotations": 6, "runtime_handler": 7},
    "PodSandboxMetadata": {"name": 1, "uid": 2, "namespace": 3, "attempt": 4},
    "PodSandboxStatusRequest": {"pod_sandbox_id": 1, "verbose": 2},
    "PodSandboxStatusResponse": {"status": 1, "info": 2, "containers_statuses": 3, "timestamp": 4},
    "PodSandboxStatus": {"id": 1, "metadata": 2, "state": 3, "created_at": 4, "network": 5,
                         "linux": 6, "labels": 7, "annotations": 8, "runtime_handler": 9},
    "PodSandboxNetworkStatus": {"ip": 1, "additional_ips": 2},
    "PodIP": {"ip": 1},
    "LinuxPodSandboxStatus": {"namespaces": 1},
    "Namespace": {"options": 2},
    "NamespaceOption": {"network": 1, "pid": 2, "ipc": 3, "target_id": 4},
    "GetEventsRequest": {},
    "ContainerEventResponse": {"container_id": 1, "container_event_type": 2, "created_at": 3,
                               "pod_sandbox_status": 4, "containers_statuses": 5},
    "ContainerStatus": {},
}
UPSTREAM_ENUMS = {
    "PodSandboxState": {"SANDBOX_READY": 0, "SANDBOX_NOTREADY": 1},
    "NamespaceMode": {"POD": 0, "CONTAINER": 1, "NODE": 2, "TARGET": 3},
    "ContainerEventType": {"CONTAINER_CREATED_EVENT": 0, "CONTAINER_STARTED_EVENT": 1,
                           "CONTAINER_STOPPED_EVENT": 2, "CONTAINER_DELETED_EVENT": 3},
}


def test_package_and_service_match_cri_v1() -> None:
    assert pb.DESCRIPTOR.package == "runtime.v1"
    service = pb.DESCRIPTOR.services_by_name["RuntimeService"]
    assert service.full_name == "runtime.v1.RuntimeService"
    methods = {m.name: m for m in service.methods}
    assert set(methods) == {"Version", "ListPodSandbox", "PodSandboxStatus", "GetContainerEvents"}
    assert methods["GetContainerEvents"].server_streaming
    assert not methods["GetContainerEvents"].client_streaming
    assert methods["GetContainerEvents"].output_type.name == "ContainerEventResponse"
    assert not any(methods[name].server_streaming for name in ("Version", "ListPodSandbox", "PodSandboxStatus"))


def test_declared_messages_have_upstream_field_numbers() -> None:
    declared = {
        name: {f.name: f.number for f in descriptor.fields}
        for name, descriptor in pb.DESCRIPTOR.message_types_by_name.items()
    }
    assert declared == UPSTREAM_FIELDS


def test_declared_enums_have_upstream_values() -> None:
    declared = {
        name: {v.name: v.number for v in descriptor.values}
        for name, descriptor in pb.DESCRIPTOR.enum_types_by_name.items()
    }
    assert declared == UPSTREAM_ENUMS


def test_event_field_4_is_sandbox_status_v026_layout() -> None:
    field = pb.ContainerEventResponse.DESCRIPTOR.fields_by_name["pod_sandbox_status"]
    assert field.message_type.full_name == "runtime.v1.PodSandboxStatus"


def _status() -> pb.PodSandboxStatus:
    return pb.PodSandboxStatus(
        id="a" * 64,
        metadata=pb.PodSandboxMetadata(name="pod-1", uid="uid-1", namespace="ns", attempt=3),
        state=pb.SANDBOX_NOTREADY,
        created_at=1_700_000_000_000_000_000,
        network=pb.PodSandboxNetworkStatus(ip="10.85.0.5", additional_ips=[pb.PodIP(ip="fd00::5")]),
        linux=pb.LinuxPodSandboxStatus(
            namespaces=pb.Namespace(
                options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.TARGET, target_id="c1")
            )
        ),
        labels={"app": "web"},
        annotations={"kubernetes.io/ingress-bandwidth": "10M"},
        runtime_handler="runc",
    )


ROUND_TRIP_MESSAGES = [
    pb.VersionRequest(version="v1"),
    pb.VersionResponse(version="0.1.0", runtime_name="cri-o", runtime_version="1.31.0", runtime_api_version="v1"),
    pb.ListPodSandboxRequest(
        filter=pb.PodSandboxFilter(
            id="abc", state=pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY), label_selector={"a": "b"}
        )
    ),
    pb.ListPodSandboxResponse(
        items=[
            pb.PodSandbox(
                id="a" * 64,
                metadata=pb.PodSandboxMetadata(name="p", uid="u", namespace="n", attempt=2**32 - 1),
                state=pb.SANDBOX_NOTREADY,
                created_at=-1,
                labels={"l": "1"},
                annotations={"k": "v"},
                runtime_handler="crun",
            )
        ]
    ),
    pb.PodSandboxStatusRequest(pod_sandbox_id="abc", verbose=True),
    pb.PodSandboxStatusResponse(
        status=_status(), info={"info": '{"pid": 0}'}, containers_statuses=[pb.ContainerStatus()], timestamp=42
    ),
    pb.GetEventsRequest(),
    pb.ContainerEventResponse(
        container_id="a" * 64,
        container_event_type=pb.CONTAINER_DELETED_EVENT,
        created_at=7,
        pod_sandbox_status=_status(),
        containers_statuses=[pb.ContainerStatus(), pb.ContainerStatus()],
    ),
]


@pytest.mark.parametrize("message", ROUND_TRIP_MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message) -> None:
    wire = message.SerializeToString()
    parsed = type(message).FromString(wire)
    assert parsed == message
    assert parsed.SerializeToString(deterministic=True) == message.SerializeToString(deterministic=True)


def test_round_trips_cover_every_top_level_message_with_fields() -> None:
    covered = {type(m).DESCRIPTOR.name for m in ROUND_TRIP_MESSAGES}
    nested_in_others = {"PodSandboxFilter", "PodSandboxStateValue", "PodSandbox", "PodSandboxMetadata",
                        "PodSandboxStatus", "PodSandboxNetworkStatus", "PodIP", "LinuxPodSandboxStatus",
                        "Namespace", "NamespaceOption", "ContainerStatus"}
    assert covered | nested_in_others == set(UPSTREAM_FIELDS)


def test_unknown_fields_from_a_newer_runtime_are_skipped() -> None:
    # What a full CRI v1 runtime sends: fields and nested messages we never declared.
    container_status = field(1, b"c" * 64) + field(2, field(1, b"nginx"))  # id, metadata
    namespace_option = field(1, 2) + field(5, field(1, 1))  # network=NODE, userns_options
    status = (
        field(1, b"s1")
        + field(6, field(1, field(2, namespace_option)))
        + field(5, field(1, b"10.85.0.9") + field(99, b"future"))
        + field(30, 12345)
    )
    wire = (
        field(1, status)
        + field(2, field(1, b"info") + field(2, b"{}"))
        + field(3, container_status)
        + field(4, 99)
        + field(77, b"unknown top-level field")
    )
    parsed = pb.PodSandboxStatusResponse.FromString(wire)
    assert parsed.status.id == "s1"
    assert parsed.status.network.ip == "10.85.0.9"
    assert parsed.status.linux.namespaces.options.network == pb.NODE
    assert dict(parsed.info) == {"info": "{}"}
    assert len(parsed.containers_statuses) == 1
    assert parsed.timestamp == 99


def test_unknown_enum_value_is_kept_as_a_number() -> None:
    wire = field(1, b"c1") + field(2, 9)
    assert pb.ContainerEventResponse.FromString(wire).container_event_type == 9


def test_committed_stubs_are_current() -> None:
    package_dir = Path(pb.__file__).parent
    fresh = generated_sources()
    assert set(fresh) == set(GENERATED_FILES)
    for name, text in fresh.items():
        committed = (package_dir / name).read_text(encoding="utf-8")
        assert committed == text, f"{name} is stale: run `python -m agent.cri.generate`"


# What the client's response deserializer (FromString) refuses; gRPC reports it as INTERNAL
# "Exception deserializing response!", which the client turns into CriNotCri.
MALFORMED = {
    "truncated varint": (pb.ContainerEventResponse, b"\x18\xff\xff"),
    "truncated tag": (pb.VersionResponse, b"\x80"),
    "length past the end": (pb.VersionResponse, b"\x12\x05abc"),
    "length past the end, nested": (pb.PodSandboxStatusResponse, field(1, b"\x0a\x09short")),
    "huge length": (pb.VersionResponse, b"\x12" + varint(2**63)),
    "truncated fixed64": (pb.VersionResponse, varint(9 << 3 | 1) + b"\x00" * 7),
    "wire type 6": (pb.VersionResponse, varint(9 << 3 | 6) + b"\x00"),
    "field number 0": (pb.VersionResponse, b"\x00\x01"),
    "string not UTF-8": (pb.VersionResponse, field(2, b"\xff")),
    "map key not UTF-8": (pb.PodSandboxStatusResponse, field(2, field(1, b"\xc3"))),
    "bad item in a list": (pb.ListPodSandboxResponse, field(1, field(1, b"ok")) + field(1, b"\x0a\x05")),
}


@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_malformed_answers_raise_decode_error(case: str) -> None:
    message_type, wire = MALFORMED[case]
    with pytest.raises(DecodeError):
        message_type.FromString(wire)

