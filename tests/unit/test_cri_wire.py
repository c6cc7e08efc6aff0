"""agent/cri/wire.py against the protobuf library: runtime_pb2 builds and parses the reference
bytes, the hand-written codec must read and write the same messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.cri import runtime_pb2 as pb
from agent.cri import wire
from agent.cri.errors import CriNotCri, CriWireError
from tests.unit.protobuf_wire import field, varint

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def unknown_fields() -> bytes:
    """Fields of every skippable wire type that neither runtime.proto nor wire.py declares."""
    return (
        field(90, 2**64 - 1)
        + varint(91 << 3 | 1) + b"\x01" * 8  # fixed64
        + varint(92 << 3 | 5) + b"\x02" * 4  # fixed32
        + field(93, field(1, b"nested") + field(2, 7))
        + field(2**29 - 1, b"highest field number")
    )


def assert_same(ours: Any, theirs: Any, where: str = "") -> None:
    """Every attribute of the wire.py message `ours` equals the same attribute of the pb one."""
    for name in ours._fields:
        mine, reference, path = getattr(ours, name), getattr(theirs, name), f"{where}.{name}"
        if hasattr(mine, "_fields"):
            assert_same(mine, reference, path)
        elif isinstance(mine, tuple):
            assert len(mine) == len(reference), path
            for index, (a, b) in enumerate(zip(mine, reference)):
                assert_same(a, b, f"{path}[{index}]")
        elif isinstance(mine, Mapping):
            number = theirs.DESCRIPTOR.fields_by_name[name].number
            if any(unknown.field_number == number for unknown in UnknownFieldSet(theirs)):
                continue  # upb moved entries with unknown fields out of the map (upb#544)
            assert isinstance(mine, Mapping) and dict(mine) == dict(reference), path
        else:
            assert (mine, type(mine)) == (reference, type(reference)), path


def assert_request_same(ours: Any, theirs: Any, where: str = "") -> None:
    """Like assert_same, for requests: a None message field is one protobuf says is not set."""
    for name in ours._fields:
        mine, path = getattr(ours, name), f"{where}.{name}"
        if mine is None:
            assert not theirs.HasField(name), path
        elif hasattr(mine, "_fields"):
            assert theirs.HasField(name), path
            assert_request_same(mine, getattr(theirs, name), path)
        else:
            assert (mine, type(mine)) == (getattr(theirs, name), type(getattr(theirs, name))), path


def test_declared_fields_match_runtime_proto() -> None:
    kinds = {wire.STRING: "string", wire.BOOL: "bool", wire.INT64: "int64", wire.UINT32: "uint32",
             wire.ENUM: "enum", wire.MESSAGE: "message", wire.REPEATED: "message", wire.MAP: "message"}
    types = {9: "string", 8: "bool", 3: "int64", 13: "uint32", 14: "enum", 11: "message"}
    for cls, schema in wire._SCHEMAS.items():
        if cls is wire._MapEntry:
            continue
        descriptor = pb.DESCRIPTOR.message_types_by_name[cls.__name__]
        for number, spec in schema.by_number.items():
            name = cls._fields[spec.index]
            upstream = descriptor.fields_by_name[name]
            assert (upstream.number, types[upstream.type]) == (number, kinds[spec.kind]), f"{cls.__name__}.{name}"
            assert (spec.kind in (wire.REPEATED, wire.MAP)) == upstream.is_repeated
            if spec.message is not None:
                assert spec.message.__name__ == upstream.message_type.name
    for name in ("SANDBOX_READY", "SANDBOX_NOTREADY", "POD", "CONTAINER", "NODE", "TARGET",
                 "CONTAINER_CREATED_EVENT", "CONTAINER_STARTED_EVENT", "CONTAINER_STOPPED_EVENT",
                 "CONTAINER_DELETED_EVENT"):
        assert getattr(wire, name) == getattr(pb, name), name


# --- responses: protobuf writes, wire.py reads ----------------------------------------------

def full_status(**overrides: Any) -> pb.PodSandboxStatus:
    values: dict[str, Any] = dict(
        id="a" * 64,
        metadata=pb.PodSandboxMetadata(name="web-1", uid="0b4a8f0e-1111", namespace="team-a", attempt=2**32 - 1),
        state=pb.SANDBOX_NOTREADY,
        created_at=INT64_MIN,
        network=pb.PodSandboxNetworkStatus(ip="10.85.0.5", additional_ips=[pb.PodIP(ip="fd00::5")]),
        linux=pb.LinuxPodSandboxStatus(
            namespaces=pb.Namespace(
                options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.TARGET, target_id="c1")
            )
        ),
        labels={"app": "web", "tier": "front"},
        annotations={"kubernetes.io/ingress-bandwidth": "10M", "kubernetes.io/egress-bandwidth": "5M",
                     "ünïcode": "värde ✓", "": "empty key", "empty value": ""},
        runtime_handler="runc",
    )
    values.update(overrides)
    return pb.PodSandboxStatus(**values)


def sandbox(index: int, **overrides: Any) -> pb.PodSandbox:
    values: dict[str, Any] = dict(
        id=f"{index:064x}",
        metadata=pb.PodSandboxMetadata(name=f"pod-{index}", uid=f"uid-{index}", namespace="ns", attempt=index),
        state=pb.SANDBOX_READY if index % 2 else pb.SANDBOX_NOTREADY,
        created_at=1_700_000_000_000_000_000 + index,
        labels={"app": f"a{index}"},
        annotations={f"k{i}": f"v{i}" for i in range(index % 4)},
        runtime_handler="crun",
    )
    values.update(overrides)
    return pb.PodSandbox(**values)


RESPONSES = [
    pb.VersionResponse(version="0.1.0", runtime_name="cri-o", runtime_version="1.31.0", runtime_api_version="v1"),
    pb.VersionResponse(),
    pb.ListPodSandboxResponse(items=[sandbox(i) for i in range(6)]),
    pb.ListPodSandboxResponse(items=[sandbox(1, created_at=-1), sandbox(2, created_at=INT64_MAX)]),
    pb.ListPodSandboxResponse(),
    pb.PodSandboxStatusResponse(
        status=full_status(),
        info={"info": '{"runtimeSpec": {"linux": {"namespaces": [{"type": "network", "path": "/x"}]}}}',
              "sandboxMetadata": "{}", "other": "x" * 5000},
        containers_statuses=[pb.ContainerStatus(), pb.ContainerStatus()],
        timestamp=-42,
    ),
    pb.PodSandboxStatusResponse(status=full_status(created_at=INT64_MAX, state=pb.SANDBOX_READY)),
    pb.PodSandboxStatusResponse(status=pb.PodSandboxStatus(id="only-an-id")),
    pb.PodSandboxStatusResponse(),
    pb.ContainerEventResponse(
        container_id="c" * 64, container_event_type=pb.CONTAINER_DELETED_EVENT, created_at=-7,
        pod_sandbox_status=full_status(), containers_statuses=[pb.ContainerStatus()],
    ),
    pb.ContainerEventResponse(container_id="c", container_event_type=-5),
    pb.ContainerEventResponse(container_event_type=2**31 - 1),
    pb.ContainerEventResponse(),
]
WIRE_TYPE = {
    pb.VersionResponse: wire.VersionResponse,
    pb.ListPodSandboxResponse: wire.ListPodSandboxResponse,
    pb.PodSandboxStatusResponse: wire.PodSandboxStatusResponse,
    pb.ContainerEventResponse: wire.ContainerEventResponse,
}


@pytest.mark.parametrize("message", RESPONSES, ids=lambda m: type(m).__name__)
def test_decodes_what_protobuf_encodes(message: Any) -> None:
    decoded = wire.decode(WIRE_TYPE[type(message)], message.SerializeToString())
    assert_same(decoded, message)


@pytest.mark.parametrize("message", RESPONSES, ids=lambda m: type(m).__name__)
def test_unknown_fields_anywhere_are_skipped(message: Any) -> None:
    # Unknown fields before, between and after the known ones, as a newer runtime sends them.
    wire_bytes = unknown_fields() + message.SerializeToString() + unknown_fields()
    reference = type(message).FromString(wire_bytes)
    assert_same(wire.decode(WIRE_TYPE[type(message)], wire_bytes), reference)
    assert_same(wire.decode(WIRE_TYPE[type(message)], wire_bytes), message)


def test_unknown_fields_inside_nested_messages_are_skipped() -> None:
    options = field(1, 2) + unknown_fields() + field(5, field(1, 1))  # network=NODE, userns_options
    status = (
        field(1, b"s1")
        + field(6, field(1, field(2, options) + unknown_fields()))
        + field(5, field(1, b"10.85.0.9") + field(99, b"future"))
        + field(2, field(1, b"pod") + unknown_fields())
        + field(30, 12345)
    )
    wire_bytes = (
        field(1, status)
        + field(2, field(1, b"info") + field(2, b"{}"))
        + field(3, field(1, b"c" * 64) + field(2, field(1, b"nginx")))  # a full ContainerStatus
        + field(4, 99)
        + field(77, b"unknown top-level field")
    )
    decoded = wire.decode(wire.PodSandboxStatusResponse, wire_bytes)
    assert_same(decoded, pb.PodSandboxStatusResponse.FromString(wire_bytes))
    assert decoded.status.linux.namespaces.options.network == wire.NODE
    status = decoded.status
    assert (status.id, status.network.ip, status.metadata.name) == ("s1", "10.85.0.9", "pod")
    assert dict(decoded.info) == {"info": "{}"}


def test_absent_fields_read_as_proto3_defaults() -> None:
    decoded = wire.decode(wire.PodSandboxStatusResponse, b"")
    assert decoded.status.linux.namespaces.options.network == wire.POD
    assert (decoded.status.id, decoded.status.metadata.attempt, decoded.status.created_at) == ("", 0, 0)
    assert dict(decoded.info) == {} and dict(decoded.status.annotations) == {}
    assert wire.decode(wire.ListPodSandboxResponse, b"").items == ()
    assert wire.decode(wire.ContainerEventResponse, b"").pod_sandbox_status.id == ""


def test_decoded_messages_are_immutable() -> None:
    decoded = wire.decode(wire.PodSandboxStatusResponse, RESPONSES[5].SerializeToString())
    with pytest.raises(AttributeError):
        decoded.status = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        decoded.info["info"] = "{}"  # type: ignore[index]
    assert isinstance(decoded.status.metadata, tuple)


# Protobuf's rules where a field appears more than once or in an unexpected form; each case is
# checked against runtime_pb2 and against what it should read as.
EDGE_CASES = {
    "last scalar wins": (
        wire.VersionResponse, field(2, b"first") + field(2, b"second"), lambda m: m.runtime_name == "second"),
    "last enum wins": (
        wire.ContainerEventResponse, field(2, 3) + field(2, 1), lambda m: m.container_event_type == 1),
    "repeated messages append": (
        wire.ListPodSandboxResponse, field(1, field(1, b"a")) + field(9, 1) + field(1, field(1, b"b")),
        lambda m: [i.id for i in m.items] == ["a", "b"]),
    "a message seen twice is merged": (
        wire.PodSandboxStatusResponse,
        field(1, field(1, b"a") + field(3, 1)) + field(1, field(2, field(1, b"n"))),
        lambda m: (m.status.id, m.status.state, m.status.metadata.name) == ("a", 1, "n")),
    "a zero on the wire overrides when merging": (
        wire.PodSandboxStatusResponse, field(1, field(3, 1)) + field(1, field(3, 0)),
        lambda m: m.status.state == 0),
    "nested merge": (
        wire.ContainerEventResponse,
        field(4, field(6, field(1, field(2, field(1, 2))))) + field(4, field(6, field(1, b""))),
        lambda m: m.pod_sandbox_status.linux.namespaces.options.network == wire.NODE),
    "map: later key wins, order kept": (
        wire.PodSandboxStatusResponse,
        field(2, field(1, b"k") + field(2, b"a")) + field(2, field(1, b"j") + field(2, b"x"))
        + field(2, field(1, b"k") + field(2, b"b")),
        lambda m: list(m.info.items()) == [("k", "b"), ("j", "x")]),
    "map entry without key or value": (
        wire.PodSandboxStatusResponse, field(2, field(2, b"v")) + field(2, field(1, b"k")),
        lambda m: dict(m.info) == {"": "v", "k": ""}),
    "map entry field repeated inside the entry": (
        wire.PodSandboxStatusResponse, field(2, field(1, b"k") + field(1, b"j") + field(2, b"v")),
        lambda m: dict(m.info) == {"j": "v"}),
    "wrong wire type for a known field is unknown": (
        wire.VersionResponse, field(2, 5) + field(3, b"1.31"),
        lambda m: (m.runtime_name, m.runtime_version) == ("", "1.31")),
    "varint for a message field is unknown": (
        wire.PodSandboxStatusResponse, field(1, 1), lambda m: m.status == wire.PodSandboxStatus()),
    "fixed32 and fixed64 for known numbers are skipped": (
        wire.ContainerEventResponse, varint(2 << 3 | 5) + b"\xff" * 4 + varint(3 << 3 | 1) + b"\xff" * 8,
        lambda m: (m.container_event_type, m.created_at) == (0, 0)),
    "negative int64 is ten bytes": (
        wire.ContainerEventResponse, field(3, -2), lambda m: m.created_at == -2),
    "int64 bits past 64 are dropped": (
        wire.ContainerEventResponse, b"\x18" + b"\xff" * 9 + b"\x7f", lambda m: m.created_at == -1),
    "int32 enum keeps the low 32 bits": (
        wire.ContainerEventResponse, field(2, 2**32 + 1), lambda m: m.container_event_type == 1),
    "negative enum": (
        wire.ContainerEventResponse, field(2, -1), lambda m: m.container_event_type == -1),
    "uint32 keeps the low 32 bits": (
        wire.PodSandboxStatusResponse, field(1, field(2, field(4, 2**40 + 3))),
        lambda m: m.status.metadata.attempt == 3),
    "padded tag and length": (
        wire.VersionResponse, b"\x92\x80\x80\x80\x00" + b"\x81\x80\x80\x80\x80\x00" + b"x",
        lambda m: m.runtime_name == "x"),
    "five-byte tag": (
        wire.VersionResponse, varint((2**29 - 1) << 3) + b"\x00", lambda m: m == wire.VersionResponse()),
}
PB_TYPE = {wire_type: pb_type for pb_type, wire_type in WIRE_TYPE.items()}


@pytest.mark.parametrize("case", EDGE_CASES, ids=str)
def test_edge_cases_read_as_protobuf_reads_them(case: str) -> None:
    message_type, wire_bytes, expected = EDGE_CASES[case]
    decoded = wire.decode(message_type, wire_bytes)
    assert expected(decoded), decoded
    assert_same(decoded, PB_TYPE[message_type].FromString(wire_bytes))


def test_unknown_fields_in_a_map_entry_keep_the_entry() -> None:
    # Go (CRI-O's language) and C++ skip them; upb moves the entry out of the map (upb#544).
    wire_bytes = field(2, field(1, b"k") + field(2, b"v") + field(3, 5))
    assert dict(wire.decode(wire.PodSandboxStatusResponse, wire_bytes).info) == {"k": "v"}
    assert dict(pb.PodSandboxStatusResponse.FromString(wire_bytes).info) == {}


MALFORMED = {
    "truncated varint": (wire.ContainerEventResponse, b"\x18\xff\xff"),
    "truncated tag": (wire.VersionResponse, b"\x80"),
    "varint longer than ten bytes": (wire.ContainerEventResponse, b"\x18" + b"\xff" * 10 + b"\x01"),
    "length past the end": (wire.VersionResponse, b"\x12\x05abc"),
    "length past the end, nested": (wire.PodSandboxStatusResponse, field(1, b"\x0a\x09short")),
    "huge length": (wire.VersionResponse, b"\x12" + varint(2**63)),
    "truncated fixed64": (wire.VersionResponse, varint(9 << 3 | 1) + b"\x00" * 7),
    "truncated fixed32": (wire.VersionResponse, varint(9 << 3 | 5) + b"\x00" * 3),
    "start group": (wire.VersionResponse, varint(9 << 3 | 3)),
    "end group": (wire.VersionResponse, varint(9 << 3 | 4)),
    "wire type 6": (wire.VersionResponse, varint(9 << 3 | 6) + b"\x00"),
    "wire type 7": (wire.VersionResponse, varint(9 << 3 | 7) + b"\x00"),
    "field number 0": (wire.VersionResponse, b"\x00\x01"),
    "tag over 32 bits": (wire.VersionResponse, varint(2**32 | 2 << 3) + b"\x00"),
    "tag in six bytes": (wire.VersionResponse, b"\x90\x80\x80\x80\x80\x00" + b"\x00"),
    "string not UTF-8": (wire.VersionResponse, field(2, b"\xff")),
    "surrogate in a string": (wire.VersionResponse, field(2, b"\xed\xa0\x80")),
    "map key not UTF-8": (wire.PodSandboxStatusResponse, field(2, field(1, b"\xc3"))),
    "bad item in a list": (wire.ListPodSandboxResponse, field(1, field(1, b"ok")) + field(1, b"\x0a\x05")),
    # Each occurrence of a merged message must be whole: concatenated, these two would parse.
    "merged occurrence cut short": (wire.PodSandboxStatusResponse, field(1, b"\x0a\x02") + field(1, b"ab")),
}


@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_malformed_input_raises_wire_error(case: str) -> None:
    message_type, wire_bytes = MALFORMED[case]
    with pytest.raises(CriWireError, match=f"^malformed {message_type.__name__}: ") as caught:
        wire.decode(message_type, wire_bytes)
    assert isinstance(caught.value, CriNotCri)
    assert "\n" not in str(caught.value)
    if "group" not in case:  # upb skips unknown groups; no proto3 runtime sends them
        with pytest.raises(DecodeError):
            PB_TYPE[message_type].FromString(wire_bytes)


# --- requests: wire.py writes, protobuf reads -----------------------------------------------

REQUESTS = [
    (wire.VersionRequest(version="v1"), pb.VersionRequest(version="v1")),
    (wire.VersionRequest(), pb.VersionRequest()),
    (
        wire.ListPodSandboxRequest(
            filter=wire.PodSandboxFilter(state=wire.PodSandboxStateValue(state=wire.SANDBOX_READY))),
        pb.ListPodSandboxRequest(
            filter=pb.PodSandboxFilter(state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY))),
    ),
    (
        wire.ListPodSandboxRequest(
            filter=wire.PodSandboxFilter(state=wire.PodSandboxStateValue(state=wire.SANDBOX_NOTREADY))),
        pb.ListPodSandboxRequest(
            filter=pb.PodSandboxFilter(state=pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY))),
    ),
    (wire.ListPodSandboxRequest(filter=wire.PodSandboxFilter()),
     pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter())),
    (wire.ListPodSandboxRequest(), pb.ListPodSandboxRequest()),
    (wire.PodSandboxStatusRequest(pod_sandbox_id="a" * 64, verbose=True),
     pb.PodSandboxStatusRequest(pod_sandbox_id="a" * 64, verbose=True)),
    (wire.PodSandboxStatusRequest(pod_sandbox_id="ü"), pb.PodSandboxStatusRequest(pod_sandbox_id="ü")),
    (wire.GetEventsRequest(), pb.GetEventsRequest()),
]


@pytest.mark.parametrize(("ours", "reference"), REQUESTS, ids=lambda m: type(m).__name__)
def test_requests_encode_as_protobuf_does(ours: Any, reference: Any) -> None:
    encoded = wire.encode(ours)
    assert encoded == reference.SerializeToString()
    assert_request_same(ours, type(reference).FromString(encoded))


def test_ready_filter_is_sent_although_ready_is_zero() -> None:
    # CRI-O filters by state only when the field is present; without it, it lists every sandbox.
    request = wire.ListPodSandboxRequest(
        filter=wire.PodSandboxFilter(state=wire.PodSandboxStateValue(state=wire.SANDBOX_READY)))
    parsed = pb.ListPodSandboxRequest.FromString(wire.encode(request))
    assert parsed.filter.HasField("state") and parsed.filter.state.state == pb.SANDBOX_READY


def test_responses_round_trip_through_the_encoder() -> None:
    # The encoder is generic: it also writes responses, negative int64 and enums included.
    for message in RESPONSES:
        decoded = wire.decode(WIRE_TYPE[type(message)], message.SerializeToString())
        encoded = wire.encode(decoded)
        assert wire.decode(type(decoded), encoded) == decoded
        assert_same(decoded, type(message).FromString(encoded))


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (wire.PodSandboxMetadata(attempt=-1), "out of range for uint32"),
        (wire.PodSandboxMetadata(attempt=2**32), "out of range for uint32"),
        (wire.ContainerEventResponse(created_at=2**63), "out of range for int64"),
        (wire.ContainerEventResponse(container_event_type=2**31), "out of range for enum"),
    ],
)
def test_encoder_refuses_out_of_range_integers(message: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        wire.encode(message)


# --- whatever a runtime sends: a message or CriWireError, never another exception -----------

def decode_or_wire_error(message_type: type, data: bytes) -> Any:
    try:
        decoded = wire.decode(message_type, data)
    except CriWireError:
        return None
    try:
        reference = PB_TYPE[message_type].FromString(data)
    except DecodeError:
        return decoded  # e.g. bad UTF-8 in a field wire.py does not read
    assert_same(decoded, reference)
    return decoded


MESSAGE_TYPES = st.sampled_from(sorted(PB_TYPE, key=lambda t: t.__name__))
VALID = [(WIRE_TYPE[type(m)], (unknown_fields() + m.SerializeToString())) for m in RESPONSES if m.ByteSize()]


@settings(max_examples=500, deadline=None)
@given(MESSAGE_TYPES, st.binary(max_size=64))
def test_random_bytes(message_type: type, data: bytes) -> None:
    decode_or_wire_error(message_type, data)


@st.composite
def corrupted(draw: st.DrawFn) -> tuple[type, bytes]:
    message_type, data = draw(st.sampled_from(VALID))
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "cut", "insert", "delete", "duplicate", "set"]))
        if action == "flip" and position < len(data):
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "set" and position < len(data):
            data[position] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF, 0x0B, 0x0C, 0x0E, 0x0F]))
        elif action == "cut":
            del data[position:]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[position:position + draw(st.integers(1, 8))]
        elif action == "duplicate":
            data[position:position] = data[position:position + draw(st.integers(1, 40))]
    return message_type, bytes(data)


@settings(max_examples=1500, deadline=None)
@given(corrupted())
def test_corrupted_valid_messages(case: tuple[type, bytes]) -> None:
    decode_or_wire_error(*case)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(VALID), min_size=1, max_size=4))
def test_concatenated_messages_merge_as_protobuf_merges(parts: list[tuple[type, bytes]]) -> None:
    message_type = parts[0][0]
    data = b"".join(chunk for kind, chunk in parts if kind is message_type)
    assert decode_or_wire_error(message_type, data) is not None
