"""The CRI messages the client sends and reads, in protobuf's wire format, without the protobuf
library: importing it (upb and the descriptors of runtime_pb2) costs the agent megabytes of
RSS for four calls.

Only the fields the client uses are declared, with runtime.proto's numbers; everything else a
runtime sends is skipped, as protobuf skips fields a .proto does not declare. Decoding follows
protobuf's rules: the last value of a repeated scalar field wins, repeated message fields
append, a singular message field seen twice is merged, an absent field reads as its proto3
default, a known field with an unexpected wire type is treated as unknown. Any malformed input
raises CriWireError. runtime_pb2 stays the reference: tests/unit/test_cri_wire.py checks this
module against it, and the lab's CRI server still uses it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from agent.cri.errors import CriWireError

# Enum values of runtime.proto; decoded enums are plain ints and may hold values not listed.
SANDBOX_READY = 0
SANDBOX_NOTREADY = 1
POD = 0
CONTAINER = 1
NODE = 2
TARGET = 3
CONTAINER_CREATED_EVENT = 0
CONTAINER_STARTED_EVENT = 1
CONTAINER_STOPPED_EVENT = 2
CONTAINER_DELETED_EVENT = 3

# Field kinds.
STRING = "string"
BOOL = "bool"
INT64 = "int64"
UINT32 = "uint32"
ENUM = "enum"
MESSAGE = "message"
REPEATED = "repeated message"
MAP = "map<string, string>"

VARINT, I64, LEN, SGROUP, EGROUP, I32 = range(6)
_WIRE_TYPE = {STRING: LEN, MESSAGE: LEN, REPEATED: LEN, MAP: LEN, BOOL: VARINT, INT64: VARINT,
              UINT32: VARINT, ENUM: VARINT}
_MASK64 = (1 << 64) - 1
_EMPTY_MAP: Mapping[str, str] = MappingProxyType({})

M = TypeVar("M", bound=tuple)


# --- requests -------------------------------------------------------------------------------

class VersionRequest(NamedTuple):
    version: str = ""


class PodSandboxStateValue(NamedTuple):
    state: int = SANDBOX_READY


class PodSandboxFilter(NamedTuple):
    state: PodSandboxStateValue | None = None
    """None: no state filter. An instance filters even for SANDBOX_READY (0): presence is
    what CRI-O looks at, and an empty submessage on the wire carries it."""


class ListPodSandboxRequest(NamedTuple):
    filter: PodSandboxFilter | None = None


class PodSandboxStatusRequest(NamedTuple):
    pod_sandbox_id: str = ""
    verbose: bool = False


class GetEventsRequest(NamedTuple):
    pass


# --- responses ------------------------------------------------------------------------------

class VersionResponse(NamedTuple):
    runtime_name: str = ""
    runtime_version: str = ""
    runtime_api_version: str = ""


class PodSandboxMetadata(NamedTuple):
    name: str = ""
    uid: str = ""
    namespace: str = ""
    attempt: int = 0


class PodSandbox(NamedTuple):
    id: str = ""
    metadata: PodSandboxMetadata = PodSandboxMetadata()
    state: int = SANDBOX_READY
    created_at: int = 0
    annotations: Mapping[str, str] = _EMPTY_MAP


class ListPodSandboxResponse(NamedTuple):
    items: tuple[PodSandbox, ...] = ()


class PodSandboxNetworkStatus(NamedTuple):
    ip: str = ""


class NamespaceOption(NamedTuple):
    network: int = POD


class Namespace(NamedTuple):
    options: NamespaceOption = NamespaceOption()


class LinuxPodSandboxStatus(NamedTuple):
    namespaces: Namespace = Namespace()


class PodSandboxStatus(NamedTuple):
    id: str = ""
    metadata: PodSandboxMetadata = PodSandboxMetadata()
    state: int = SANDBOX_READY
    created_at: int = 0
    network: PodSandboxNetworkStatus = PodSandboxNetworkStatus()
    linux: LinuxPodSandboxStatus = LinuxPodSandboxStatus()
    annotations: Mapping[str, str] = _EMPTY_MAP


class PodSandboxStatusResponse(NamedTuple):
    status: PodSandboxStatus = PodSandboxStatus()
    info: Mapping[str, str] = _EMPTY_MAP


class ContainerEventResponse(NamedTuple):
    container_id: str = ""
    container_event_type: int = CONTAINER_CREATED_EVENT
    created_at: int = 0
    pod_sandbox_status: PodSandboxStatus = PodSandboxStatus()


class _MapEntry(NamedTuple):
    """What a map<string, string> entry is on the wire."""

    key: str = ""
    value: str = ""


# --- schemas --------------------------------------------------------------------------------

class _Field(NamedTuple):
    index: int
    """Position in the NamedTuple."""
    kind: str
    message: Any
    """The NamedTuple class of a MESSAGE or REPEATED field, else None."""
    wire_type: int


class _Schema(NamedTuple):
    by_number: dict[int, _Field]
    in_order: tuple[tuple[int, _Field], ...]
    defaults: tuple[Any, ...]
    """What an absent field reads as, in attribute order."""


_SCHEMAS: dict[type, _Schema] = {}


def _declare(cls: type, **fields: tuple[Any, ...]) -> None:
    """Give cls's attributes their wire fields: name=(number, kind) or (number, kind, class)."""
    names: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]
    defaults: dict[str, Any] = cls._field_defaults  # type: ignore[attr-defined]
    if set(fields) != set(names) or set(defaults) != set(names):
        raise TypeError(f"{cls.__name__}: every attribute needs a wire field and a default")
    by_number = {}
    for name, (number, kind, *message) in fields.items():
        by_number[number] = _Field(names.index(name), kind, message[0] if message else None, _WIRE_TYPE[kind])
    _SCHEMAS[cls] = _Schema(by_number, tuple(sorted(by_number.items())), tuple(defaults[n] for n in names))


_declare(VersionRequest, version=(1, STRING))
_declare(PodSandboxStateValue, state=(1, ENUM))
_declare(PodSandboxFilter, state=(2, MESSAGE, PodSandboxStateValue))
_declare(ListPodSandboxRequest, filter=(1, MESSAGE, PodSandboxFilter))
_declare(PodSandboxStatusRequest, pod_sandbox_id=(1, STRING), verbose=(2, BOOL))
_declare(GetEventsRequest)
_declare(VersionResponse, runtime_name=(2, STRING), runtime_version=(3, STRING),
         runtime_api_version=(4, STRING))
_declare(PodSandboxMetadata, name=(1, STRING), uid=(2, STRING), namespace=(3, STRING), attempt=(4, UINT32))
_declare(PodSandbox, id=(1, STRING), metadata=(2, MESSAGE, PodSandboxMetadata), state=(3, ENUM),
         created_at=(4, INT64), annotations=(6, MAP))
_declare(ListPodSandboxResponse, items=(1, REPEATED, PodSandbox))
_declare(PodSandboxNetworkStatus, ip=(1, STRING))
_declare(NamespaceOption, network=(1, ENUM))
_declare(Namespace, options=(2, MESSAGE, NamespaceOption))
_declare(LinuxPodSandboxStatus, namespaces=(1, MESSAGE, Namespace))
_declare(PodSandboxStatus, id=(1, STRING), metadata=(2, MESSAGE, PodSandboxMetadata), state=(3, ENUM),
         created_at=(4, INT64), network=(5, MESSAGE, PodSandboxNetworkStatus),
         linux=(6, MESSAGE, LinuxPodSandboxStatus), annotations=(8, MAP))
_declare(PodSandboxStatusResponse, status=(1, MESSAGE, PodSandboxStatus), info=(2, MAP))
_declare(ContainerEventResponse, container_id=(1, STRING), container_event_type=(2, ENUM),
         created_at=(3, INT64), pod_sandbox_status=(4, MESSAGE, PodSandboxStatus))
_declare(_MapEntry, key=(1, STRING), value=(2, STRING))


# --- decoding -------------------------------------------------------------------------------

def decode(cls: type[M], data: bytes) -> M:
    """Parse `data` as the message cls; CriWireError names the message when it is malformed."""
    try:
        return _decode(cls, bytes(data))
    except CriWireError as exc:
        raise CriWireError(f"malformed {cls.__name__}: {exc}") from None


def _decode(cls: type[M], data: bytes) -> M:
    schema = _SCHEMAS[cls]
    values = list(schema.defaults)
    merged: dict[int, tuple[_Field, list[bytes]]] = {}
    appended: dict[int, Any] = {}
    for number, wire_type, start, stop in _fields(data):
        spec = schema.by_number.get(number)
        if spec is None or spec.wire_type != wire_type:
            continue  # unknown to us, or not what upstream declares: protobuf skips both
        kind = spec.kind
        if wire_type == VARINT:
            values[spec.index] = _from_varint(kind, start)
        elif kind == STRING:
            values[spec.index] = _text(data[start:stop])
        elif kind == MESSAGE:
            merged.setdefault(spec.index, (spec, []))[1].append(data[start:stop])
        elif kind == REPEATED:
            appended.setdefault(spec.index, []).append(_decode(spec.message, data[start:stop]))
        else:
            # MAP: entries in order, a later key replaces an earlier one. Unknown fields inside
            # an entry are skipped as in any message (Go, C++); upb would move the whole entry
            # to the parent's unknown fields instead (protocolbuffers/upb#544).
            entry = _decode(_MapEntry, data[start:stop])
            appended.setdefault(spec.index, {})[entry.key] = entry.value
    for index, (spec, parts) in merged.items():
        if len(parts) > 1:
            # Parsing the concatenation is protobuf's merge of the occurrences, once each
            # occurrence is known to be complete on its own.
            for part in parts:
                for _ in _fields(part):
                    pass
        values[index] = _decode(spec.message, b"".join(parts))
    for index, collected in appended.items():
        values[index] = MappingProxyType(collected) if isinstance(collected, dict) else tuple(collected)
    return cls._make(values)  # type: ignore[attr-defined]


def _fields(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, start, stop) of each field; a varint's value comes as start."""
    pos, end = 0, len(data)
    while pos < end:
        tag = data[pos]
        if tag < 0x80:  # one-byte varints (tags of fields 1-15, short lengths) are most of them
            after = pos + 1
        else:
            tag, after = _varint(data, pos)
            if tag > 0xFFFFFFFF or after - pos > 5:
                raise CriWireError(f"field tag out of range at byte {pos}")
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise CriWireError(f"field number 0 at byte {pos}")
        pos = after
        if wire_type == VARINT:
            value, pos = _varint(data, pos)
            yield number, wire_type, value, pos
            continue
        if wire_type == LEN:
            if pos < end and data[pos] < 0x80:
                length = data[pos]
                pos += 1
            else:
                length, pos = _varint(data, pos)
        elif wire_type == I64:
            length = 8
        elif wire_type == I32:
            length = 4
        else:
            # Groups (3, 4) are proto2-only and 6, 7 do not exist: no CRI runtime sends them.
            raise CriWireError(f"field {number} has wire type {wire_type}")
        if pos + length > end:
            raise CriWireError(f"field {number} runs {pos + length - end} bytes past the end")
        yield number, wire_type, pos, pos + length
        pos += length


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at pos and the position after it; bits past 64 are dropped, as upb does."""
    result = shift = 0
    for i in range(pos, min(pos + 10, len(data))):
        byte = data[i]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _MASK64, i + 1
        shift += 7
    if len(data) - pos < 10:
        raise CriWireError(f"varint truncated at byte {pos}")
    raise CriWireError(f"varint longer than 10 bytes at byte {pos}")


def _from_varint(kind: str, value: int) -> int | bool:
    if kind == INT64:
        return value - (1 << 64) if value >> 63 else value
    if kind == ENUM:  # int32: the low 32 bits, as protobuf casts
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value >> 31 else value
    if kind == UINT32:
        return value & 0xFFFFFFFF
    return value != 0  # BOOL


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # proto3 strings must be UTF-8; protobuf (upb, Go) refuses them too.
        raise CriWireError(f"string is not UTF-8 ({exc.reason} at byte {exc.start})") from None


# --- encoding -------------------------------------------------------------------------------

_RANGES = {INT64: (-(1 << 63), (1 << 63) - 1), ENUM: (-(1 << 31), (1 << 31) - 1), UINT32: (0, (1 << 32) - 1)}


def encode(message: tuple) -> bytes:
    """Serialize any message of this module. proto3 defaults are left out, as protobuf does;
    a message field is written whenever it is not None, even when empty."""
    out = bytearray()
    for number, spec in _SCHEMAS[type(message)].in_order:
        value = message[spec.index]
        kind = spec.kind
        if kind == MESSAGE:
            if value is not None:
                _put_bytes(out, number, encode(value))
        elif kind == REPEATED:
            for item in value:
                _put_bytes(out, number, encode(item))
        elif kind == MAP:
            for key, item in value.items():
                _put_bytes(out, number, encode(_MapEntry(key, item)))
        elif kind == STRING:
            if value:
                _put_bytes(out, number, value.encode("utf-8"))
        elif value:
            if kind in _RANGES and not _RANGES[kind][0] <= value <= _RANGES[kind][1]:
                raise ValueError(f"{type(message).__name__}: {value} out of range for {kind}")
            out += _varint_bytes(number << 3 | VARINT)
            out += _varint_bytes(int(value) & _MASK64)  # negative: ten bytes of two's complement
    return bytes(out)


def _put_bytes(out: bytearray, number: int, payload: bytes) -> None:
    out += _varint_bytes(number << 3 | LEN)
    out += _varint_bytes(len(payload))
    out += payload


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
