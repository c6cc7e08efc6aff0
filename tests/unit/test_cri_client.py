"""CriClient against the lab's CRI-O stand-in on a temporary socket, and its error mapping."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import DecodeError

from agent.cri import runtime_pb2 as pb
from agent.cri.client import MAX_RECEIVE_MESSAGE_BYTES, CriClient, SandboxEvent, _event_from_response
from agent.cri.endpoint import Endpoint
from agent.cri.errors import (
    CriError,
    CriInfoError,
    CriNotCri,
    CriNotFound,
    CriPermissionDenied,
    CriUnavailable,
)
from agent.cri.rpc_errors import classify_status, error_from_status
from agent.lab.cri_server import LabServerError, prepare_socket_path, remove_socket, serve
from tests.unit.protobuf_wire import field

POD_A = {
    "sandbox_id": "a" * 64,
    "uid": "0b4a8f0e-1111-4c1e-9d6a-000000000001",
    "namespace": "team-a",
    "name": "web-1",
    "attempt": 1,
    "netns_path": "/var/run/netns/0b4a8f0e-aaaa-4c1e-9d6a-000000000001",
    "host_network": False,
    "ip": "10.85.0.5",
    "host_veth": "veth1234abcd",
    "annotations": {"kubernetes.io/ingress-bandwidth": "10M"},
    "labels": {"app": "web"},
    "created_at_ns": 1_700_000_000_000_000_000,
}
POD_HOST = dict(POD_A, sandbox_id="b" * 64, name="node-exporter", host_network=True,
                netns_path="/var/run/netns/0b4a8f0e-bbbb-4c1e-9d6a-000000000002", ip="192.0.2.10",
                annotations={}, labels={"app": "exporter"})
POD_NOT_READY = dict(POD_A, sandbox_id="c" * 64, name="web-0", ready=False)
POD_NEW = dict(POD_A, sandbox_id="d" * 64, name="web-2", ip="10.85.0.6")

TIMEOUT_S = 1.0
"""Bounds every wait in these tests so a broken server fails a test instead of hanging it."""


def wait_subscribed(stream) -> None:
    """Block until the server sent response headers, or the stream ended: the lab server sends
    them as soon as it has subscribed, so a test can change pods after this without racing the
    subscription (CRI-O sends headers only with its first event)."""
    try:
        stream._call.initial_metadata()
    except grpc.RpcError:
        pass  # reported by the next __next__


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory whose socket paths stay well under sun_path's 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="podbw-cri-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def write_state(path: Path, pods: list[dict]) -> None:
    """Like the lab: write a temporary file, then rename it over the state file."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"name": "test", "pods": pods}), encoding="utf-8")
    os.replace(temporary, path)


@dataclass
class Lab:
    state_path: Path
    socket_path: Path
    server: grpc.Server

    def set_pods(self, pods: list[dict]) -> None:
        write_state(self.state_path, pods)


def _start_lab(short_dir: Path, pods: list[dict] | None, pod_events: bool, runtime: str = "crio") -> Lab:
    state_path = short_dir / "state.json"
    if pods is not None:
        write_state(state_path, pods)
    socket_path = short_dir / "crio.sock"
    return Lab(state_path, socket_path, serve(str(state_path), str(socket_path), pod_events, runtime))


@pytest.fixture
def lab(short_dir: Path) -> Iterator[Lab]:
    started = _start_lab(short_dir, [POD_A, POD_HOST, POD_NOT_READY], pod_events=True)
    yield started
    started.server.stop(0).wait()


@pytest.fixture
def lab_without_events(short_dir: Path) -> Iterator[Lab]:
    started = _start_lab(short_dir, [POD_A], pod_events=False)
    yield started
    started.server.stop(0).wait()


CONTAINERD_PIN = "cni-0b4a8f0e-aaaa-4c1e-9d6a-000000000001"


@pytest.fixture
def containerd_client(short_dir: Path) -> Iterator[CriClient]:
    """The lab's server answering as containerd; its host-network pod has no pin, as there."""
    pin = short_dir / CONTAINERD_PIN
    pin.write_text("")  # containerd reports a pin that is gone as netNamespaceClosed
    started = _start_lab(short_dir, [dict(POD_A, netns_path=str(pin)), dict(POD_HOST, netns_path="", ip="")],
                         pod_events=True, runtime="containerd")
    with CriClient(f"unix://{started.socket_path}", timeout_s=TIMEOUT_S) as c:
        yield c
    started.server.stop(0).wait()


@pytest.fixture
def client(lab: Lab) -> Iterator[CriClient]:
    with CriClient(f"unix://{lab.socket_path}", timeout_s=TIMEOUT_S) as c:
        yield c


# --- the happy path -------------------------------------------------------------------------

def test_version_answers_like_crio(client: CriClient) -> None:
    version = client.version()
    assert version.runtime_name == "cri-o"
    assert version.runtime_version == "1.31.0-podbw-lab"
    assert version.runtime_api_version == "v1"


def test_version_answers_like_containerd(containerd_client: CriClient) -> None:
    version = containerd_client.version()
    assert (version.runtime_name, version.runtime_version, version.runtime_api_version) == (
        "containerd", "v2.1.0-podbw-lab", "v1")


def test_containerd_status_gives_the_pin_and_none_for_host_network(containerd_client: CriClient) -> None:
    details = containerd_client.sandbox_status(POD_A["sandbox_id"])
    assert os.path.basename(details.netns_path or "") == CONTAINERD_PIN and not details.host_network
    host = containerd_client.sandbox_status(POD_HOST["sandbox_id"])
    assert host.host_network and host.netns_path is None


def test_bare_path_endpoint_works(lab: Lab) -> None:
    with CriClient(str(lab.socket_path)) as c:
        assert c.version().runtime_name == "cri-o"
        assert str(c.endpoint) == f"unix://{lab.socket_path}"


def test_list_returns_only_ready_sandboxes(client: CriClient) -> None:
    sandboxes = {s.id: s for s in client.list_ready_sandboxes()}
    assert set(sandboxes) == {POD_A["sandbox_id"], POD_HOST["sandbox_id"]}
    web = sandboxes[POD_A["sandbox_id"]]
    assert (web.name, web.uid, web.namespace, web.attempt) == ("web-1", POD_A["uid"], "team-a", 1)
    assert web.ready
    assert web.created_at_ns == POD_A["created_at_ns"]
    assert web.annotations == {"kubernetes.io/ingress-bandwidth": "10M"}


def test_list_with_no_state_file_is_empty(short_dir: Path) -> None:
    lab = _start_lab(short_dir, None, pod_events=False)
    try:
        with CriClient(str(lab.socket_path), timeout_s=TIMEOUT_S) as c:
            assert c.list_ready_sandboxes() == []
    finally:
        lab.server.stop(0).wait()


def test_status_gives_netns_path_and_ip(client: CriClient) -> None:
    details = client.sandbox_status(POD_A["sandbox_id"])
    assert details.id == POD_A["sandbox_id"]
    assert details.netns_path == POD_A["netns_path"]
    assert details.ip == "10.85.0.5"
    assert not details.host_network
    assert details.ready
    assert details.annotations == POD_A["annotations"]
    assert (details.name, details.namespace, details.uid) == ("web-1", "team-a", POD_A["uid"])


def test_status_of_host_network_pod_says_node(client: CriClient) -> None:
    details = client.sandbox_status(POD_HOST["sandbox_id"])
    assert details.host_network
    # CRI-O pins host-network pods too; the flag is what keeps discovery off the host netns.
    assert details.netns_path == POD_HOST["netns_path"]


def test_status_of_unknown_sandbox_is_not_found(client: CriClient) -> None:
    with pytest.raises(CriNotFound) as caught:
        client.sandbox_status("f" * 64)
    message = str(caught.value)
    assert message.startswith(f"CRI endpoint {client.endpoint}: PodSandboxStatus: NOT_FOUND")
    assert "\n" not in message


def test_lab_omits_verbose_info_unless_asked(lab: Lab) -> None:
    with grpc.insecure_channel(f"unix://{lab.socket_path}") as channel:
        call = channel.unary_unary(
            "/runtime.v1.RuntimeService/PodSandboxStatus",
            request_serializer=pb.PodSandboxStatusRequest.SerializeToString,
            response_deserializer=pb.PodSandboxStatusResponse.FromString,
        )
        plain = call(pb.PodSandboxStatusRequest(pod_sandbox_id=POD_A["sandbox_id"]), timeout=TIMEOUT_S)
        verbose = call(pb.PodSandboxStatusRequest(pod_sandbox_id=POD_A["sandbox_id"], verbose=True),
                       timeout=TIMEOUT_S)
    assert dict(plain.info) == {}
    namespaces = json.loads(verbose.info["info"])["runtimeSpec"]["linux"]["namespaces"]
    assert namespaces[0] == {"type": "network", "path": POD_A["netns_path"]}
    assert plain.status.linux.namespaces.options.network == pb.POD


def test_lab_list_honours_id_filter(lab: Lab) -> None:
    with grpc.insecure_channel(f"unix://{lab.socket_path}") as channel:
        call = channel.unary_unary(
            "/runtime.v1.RuntimeService/ListPodSandbox",
            request_serializer=pb.ListPodSandboxRequest.SerializeToString,
            response_deserializer=pb.ListPodSandboxResponse.FromString,
        )
        by_id = call(pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(id=POD_NOT_READY["sandbox_id"])),
                     timeout=TIMEOUT_S)
        by_prefix = call(pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(id="bbbb")), timeout=TIMEOUT_S)
        everything = call(pb.ListPodSandboxRequest(), timeout=TIMEOUT_S)
    assert [item.id for item in by_id.items] == [POD_NOT_READY["sandbox_id"]]
    assert by_id.items[0].state == pb.SANDBOX_NOTREADY
    assert [item.id for item in by_prefix.items] == [POD_HOST["sandbox_id"]]
    assert len(everything.items) == 3


def test_client_reuses_one_channel(client: CriClient) -> None:
    client.version()
    channel = client._channel
    client.list_ready_sandboxes()
    client.sandbox_status(POD_A["sandbox_id"])
    assert channel is not None and client._channel is channel


# --- events ---------------------------------------------------------------------------------

def _take(stream, count: int) -> list[SandboxEvent]:
    return [next(stream) for _ in range(count)]


def test_added_pod_yields_created_then_started(lab: Lab, client: CriClient) -> None:
    stream = client.events(timeout_s=TIMEOUT_S)
    wait_subscribed(stream)
    lab.set_pods([POD_A, POD_HOST, POD_NOT_READY, POD_NEW])
    events = _take(stream, 2)
    stream.cancel()
    assert [e.event_type for e in events] == ["CREATED", "STARTED"]
    for event in events:
        assert event.container_id == event.sandbox_id == POD_NEW["sandbox_id"]
        assert event.is_sandbox
        assert event.created_at_ns > 0
    assert list(stream) == []  # cancelled: ends quietly


def test_removed_pod_yields_stopped_then_deleted(lab: Lab, client: CriClient) -> None:
    stream = client.events(timeout_s=TIMEOUT_S)
    wait_subscribed(stream)
    lab.set_pods([POD_HOST, POD_NOT_READY])
    events = _take(stream, 2)
    stream.cancel()
    assert [(e.event_type, e.sandbox_id, e.is_sandbox) for e in events] == [
        ("STOPPED", POD_A["sandbox_id"], True),
        ("DELETED", POD_A["sandbox_id"], True),
    ]


def test_every_concurrent_stream_gets_the_events(lab: Lab, client: CriClient) -> None:
    streams = [client.events(timeout_s=TIMEOUT_S) for _ in range(4)]
    for stream in streams:
        wait_subscribed(stream)
    lab.set_pods([POD_A, POD_HOST, POD_NOT_READY, POD_NEW])
    with ThreadPoolExecutor(max_workers=len(streams)) as pool:
        received = list(pool.map(lambda s: [e.event_type for e in _take(s, 2)], streams))
    for stream in streams:
        stream.cancel()
    assert received == [["CREATED", "STARTED"]] * len(streams)


def test_events_off_ends_the_stream_at_once(lab_without_events: Lab) -> None:
    with CriClient(str(lab_without_events.socket_path), timeout_s=TIMEOUT_S) as c:
        # A deadline error here would raise CriUnavailable instead of ending the iteration.
        assert list(c.events(timeout_s=TIMEOUT_S)) == []


def test_stream_breaks_with_unavailable_when_the_runtime_stops(short_dir: Path) -> None:
    lab = _start_lab(short_dir, [POD_A], pod_events=True)
    try:
        with CriClient(str(lab.socket_path), timeout_s=TIMEOUT_S) as c:
            stream = c.events(timeout_s=5 * TIMEOUT_S)
            wait_subscribed(stream)
            lab.server.stop(0).wait()
            with pytest.raises(CriUnavailable, match="GetContainerEvents"):
                next(stream)
    finally:
        lab.server.stop(0).wait()


def test_close_ends_an_open_stream_quietly(lab: Lab) -> None:
    c = CriClient(str(lab.socket_path), timeout_s=TIMEOUT_S)
    stream = c.events(timeout_s=5 * TIMEOUT_S)
    wait_subscribed(stream)
    c.close()
    assert list(stream) == []
    with pytest.raises(CriError, match="client is closed"):
        c.version()
    c.close()  # twice is fine


def test_malformed_state_file_is_an_error_not_a_crash(lab: Lab, client: CriClient) -> None:
    lab.state_path.write_text("{ not json", encoding="utf-8")
    with pytest.raises(CriError, match="INTERNAL: lab state"):
        client.list_ready_sandboxes()


def test_event_conversion_of_container_and_unknown_events() -> None:
    container_event = _event_from_response(pb.ContainerEventResponse(
        container_id="c" * 64, container_event_type=pb.CONTAINER_STOPPED_EVENT, created_at=5,
        pod_sandbox_status=pb.PodSandboxStatus(id="s" * 64)))
    assert container_event == SandboxEvent("c" * 64, "STOPPED", 5, "s" * 64, False)
    # container_id "x", event type 9: an event type a newer runtime may send.
    unknown = _event_from_response(pb.ContainerEventResponse.FromString(b"\x0a\x01x\x10\x09"))
    assert (unknown.event_type, unknown.sandbox_id, unknown.is_sandbox) == ("UNKNOWN", "", False)


# --- what is not a working runtime ----------------------------------------------------------

def test_missing_socket_is_unavailable_with_clear_message(short_dir: Path) -> None:
    path = short_dir / "nothing.sock"
    with CriClient(f"unix://{path}", timeout_s=TIMEOUT_S) as c, pytest.raises(CriUnavailable) as caught:
        c.version()
    assert str(caught.value) == f"CRI endpoint unix://{path}: socket does not exist"


def test_missing_socket_is_unavailable_for_streams_too(short_dir: Path) -> None:
    with CriClient(str(short_dir / "nothing.sock")) as c, pytest.raises(CriUnavailable, match="does not exist"):
        c.events()


def test_regular_file_is_not_a_socket(short_dir: Path) -> None:
    path = short_dir / "file.sock"
    path.write_text("")
    with CriClient(str(path), timeout_s=TIMEOUT_S) as c, pytest.raises(CriNotCri) as caught:
        c.version()
    assert str(caught.value) == f"CRI endpoint unix://{path}: not a socket but a regular file"


def test_directory_is_not_a_socket(short_dir: Path) -> None:
    with CriClient(str(short_dir), timeout_s=TIMEOUT_S) as c, pytest.raises(CriNotCri, match="a directory"):
        c.version()


def test_stale_socket_nobody_listens_on_is_unavailable(short_dir: Path) -> None:
    path = short_dir / "stale.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.close()  # the file stays, nobody listens: connection refused
    with CriClient(str(path), timeout_s=TIMEOUT_S) as c, pytest.raises(CriUnavailable) as caught:
        c.version()
    assert str(caught.value).startswith(f"CRI endpoint unix://{path}: Version: UNAVAILABLE")


class PlainSocketServer:
    """A unix socket server that is not gRPC: it closes at once, stays silent, or talks HTTP/1."""

    def __init__(self, path: Path, behaviour: str) -> None:
        self.behaviour = behaviour
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(8)
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # closed by stop()
            if self.behaviour == "close":
                connection.close()
            elif self.behaviour == "http1":
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                connection.close()
            else:
                self.connections.append(connection)  # silent: keep it open, never answer

    def stop(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def plain_server(short_dir: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    path = short_dir / "plain.sock"
    server = PlainSocketServer(path, request.param)
    yield path
    server.stop()


@pytest.mark.parametrize(
    ("plain_server", "expected"),
    # An HTTP/1 peer that answers and closes races gRPC's own write: either its answer is read
    # (not CRI) or the write hits the closed socket first (unavailable). Both are clear errors.
    [("close", CriUnavailable), ("silent", CriUnavailable), ("http1", (CriNotCri, CriUnavailable))],
    indirect=["plain_server"],
)
def test_plain_socket_server_gives_cri_error_not_a_hang(plain_server: Path, expected: type) -> None:
    # The silent peer costs the whole deadline; the others answer at once, and a longer
    # deadline keeps a loaded machine from turning their answer into a timeout.
    timeout_s = 0.5 if expected is CriUnavailable else 3.0
    with CriClient(str(plain_server), timeout_s=timeout_s) as c, pytest.raises(expected) as caught:
        c.version()
    message = str(caught.value)
    assert message.startswith(f"CRI endpoint unix://{plain_server}: Version:")
    assert "\n" not in message


@pytest.fixture
def empty_grpc_server(short_dir: Path) -> Iterator[Path]:
    path = short_dir / "grpc.sock"
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    server.add_insecure_port(f"unix://{path}")
    server.start()
    yield path
    server.stop(0).wait()


def test_grpc_server_without_cri_is_not_cri(empty_grpc_server: Path) -> None:
    with CriClient(str(empty_grpc_server), timeout_s=TIMEOUT_S) as c, pytest.raises(CriNotCri) as caught:
        c.version()
    assert "not a CRI v1 runtime (UNIMPLEMENTED" in str(caught.value)


GARBAGE = b"\x12\x05ab"
"""A field whose length runs past the end of the message."""


@dataclass
class RawServer:
    """A gRPC server on the CRI service that answers every call with `answer` (raw bytes)
    and records the raw requests it got."""

    path: Path
    answer: bytes
    requests: list[tuple[str, bytes]]


@pytest.fixture
def raw_grpc_server(short_dir: Path) -> Iterator[RawServer]:
    raw = RawServer(short_dir / "raw.sock", GARBAGE, [])

    def unary_for(method: str):
        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            raw.requests.append((method, request))
            return raw.answer
        return grpc.unary_unary_rpc_method_handler(answer)

    stream = grpc.unary_stream_rpc_method_handler(lambda request, context: iter([raw.answer]))
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "runtime.v1.RuntimeService",
        {name: unary_for(name) for name in ("Version", "ListPodSandbox", "PodSandboxStatus")}
        | {"GetContainerEvents": stream},
    ),))
    server.add_insecure_port(f"unix://{raw.path}")
    server.start()
    yield raw
    server.stop(0).wait()


@pytest.mark.parametrize(
    "call",
    [lambda c: c.version(), lambda c: c.list_ready_sandboxes(), lambda c: c.sandbox_status("a" * 64),
     lambda c: next(c.events(timeout_s=TIMEOUT_S))],
    ids=["Version", "ListPodSandbox", "PodSandboxStatus", "GetContainerEvents"],
)
def test_answer_that_is_not_protobuf_is_not_cri(raw_grpc_server: RawServer, call, caplog) -> None:
    with CriClient(str(raw_grpc_server.path), timeout_s=TIMEOUT_S) as c, pytest.raises(CriNotCri) as caught:
        call(c)
    assert "does not speak CRI gRPC (INTERNAL: Exception deserializing response!)" in str(caught.value)
    # gRPC logs what the deserializer raised: protobuf's own parse error.
    raised = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert raised and all(isinstance(exc, DecodeError) for exc in raised), raised


def test_requests_on_the_wire(raw_grpc_server: RawServer) -> None:
    raw_grpc_server.answer = b""  # every response message empty
    with CriClient(str(raw_grpc_server.path), timeout_s=TIMEOUT_S) as c:
        c.version()
        assert c.list_ready_sandboxes() == []
        c.sandbox_status("ab")
    assert raw_grpc_server.requests == [
        ("Version", field(1, b"v1")),
        # The state filter is present although READY is 0: CRI-O filters only when it is.
        ("ListPodSandbox", field(1, field(2, b""))),
        ("PodSandboxStatus", field(1, b"ab") + field(2, 1)),
    ]


def test_answer_over_the_receive_limit_is_a_one_line_error(raw_grpc_server: RawServer) -> None:
    raw_grpc_server.answer = field(1, b"x" * MAX_RECEIVE_MESSAGE_BYTES)  # VersionResponse.version
    with CriClient(str(raw_grpc_server.path), timeout_s=5 * TIMEOUT_S) as c, pytest.raises(CriError) as caught:
        c.version()
    message = str(caught.value)
    assert message.startswith(f"CRI endpoint unix://{raw_grpc_server.path}: Version: RESOURCE_EXHAUSTED")
    assert "\n" not in message and len(message) < 500


def test_unsupported_endpoints_are_refused() -> None:
    with pytest.raises(CriError, match="only unix:// endpoints"):
        CriClient("tcp://127.0.0.1:10010")
    with pytest.raises(CriError, match="longer than 107 bytes"):
        CriClient("/tmp/" + "x" * 120)
    with pytest.raises(CriError, match="empty socket path"):
        CriClient("unix://")


def test_endpoint_forms_parse_to_the_same_path() -> None:
    forms = ["unix:///run/crio/crio.sock", "unix:/run/crio/crio.sock", "/run/crio/crio.sock"]
    assert {Endpoint.parse(form).socket_path for form in forms} == {"/run/crio/crio.sock"}


# --- permission denied: we run as root, so the kernel never refuses us; test the decisions --

def test_socket_without_access_is_permission_denied(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with CriClient(str(lab.socket_path), timeout_s=TIMEOUT_S) as c, pytest.raises(CriPermissionDenied) as caught:
        c.version()
    assert str(caught.value).startswith(f"CRI endpoint unix://{lab.socket_path}: permission denied")


def test_unsearchable_directory_is_permission_denied(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "stat", refuse)
    with pytest.raises(CriPermissionDenied, match="permission denied on a directory"):
        Endpoint.parse(str(short_dir / "x.sock")).check_socket()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_chmod_000_directory_is_permission_denied(lab: Lab) -> None:
    os.chmod(lab.socket_path.parent, 0)
    try:
        with CriClient(str(lab.socket_path)) as c, pytest.raises(CriPermissionDenied):
            c.version()
    finally:
        os.chmod(lab.socket_path.parent, 0o700)


@pytest.mark.parametrize(
    ("code", "details", "expected"),
    [
        (grpc.StatusCode.UNAVAILABLE, "failed to connect; last error: unix:/x: Permission denied", CriPermissionDenied),
        (grpc.StatusCode.PERMISSION_DENIED, "nope", CriPermissionDenied),
        (grpc.StatusCode.UNAVAILABLE, "connect: Connection refused (111)", CriUnavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", CriUnavailable),
        (grpc.StatusCode.CANCELLED, "Socket closed", CriUnavailable),
        (grpc.StatusCode.UNIMPLEMENTED, "unknown service runtime.v1.RuntimeService", CriNotCri),
        (grpc.StatusCode.UNAVAILABLE, "Trying to connect an http1.x server", CriNotCri),
        (grpc.StatusCode.INTERNAL, "Exception deserializing response!", CriNotCri),
        (grpc.StatusCode.NOT_FOUND, "could not find pod", CriNotFound),
        (grpc.StatusCode.INTERNAL, "runtime exploded", CriError),
    ],
)
def test_status_classification(code: grpc.StatusCode, details: str, expected: type) -> None:
    assert classify_status(code, details) is expected


def test_error_messages_are_one_line_and_name_endpoint_and_call() -> None:
    error = error_from_status("unix:///run/x.sock", "Version", grpc.StatusCode.DEADLINE_EXCEEDED,
                              "Deadline\nExceeded", 2.0)
    assert isinstance(error, CriUnavailable)
    assert str(error) == "CRI endpoint unix:///run/x.sock: Version: no answer within 2 s (DEADLINE_EXCEEDED)"
    multi = error_from_status("unix:///run/x.sock", "ListPodSandbox", grpc.StatusCode.INTERNAL,
                              "line one\nline two", 2.0)
    assert str(multi) == "CRI endpoint unix:///run/x.sock: ListPodSandbox: INTERNAL: line one line two"


def test_bad_verbose_info_is_info_error_naming_endpoint_and_sandbox(
    lab: Lab, client: CriClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.lab import cri_server

    monkeypatch.setattr(cri_server.LabSandbox, "verbose_info", lambda self, runtime: {"info": "{broken"})
    with pytest.raises(CriInfoError) as caught:
        client.sandbox_status(POD_A["sandbox_id"])
    assert str(caught.value).startswith(
        f"CRI endpoint unix://{lab.socket_path}: sandbox {POD_A['sandbox_id']}: verbose info: not valid JSON"
    )


# --- the lab server's socket housekeeping ----------------------------------------------------

def test_prepare_socket_path_creates_parent_and_removes_stale_socket(short_dir: Path) -> None:
    path = short_dir / "run" / "crio" / "crio.sock"
    prepare_socket_path(str(path))
    assert path.parent.is_dir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    prepare_socket_path(str(path))
    assert not path.exists()


def test_prepare_socket_path_refuses_live_socket_and_regular_file(lab: Lab, short_dir: Path) -> None:
    with pytest.raises(LabServerError, match="another server is listening"):
        prepare_socket_path(str(lab.socket_path))
    regular = short_dir / "regular"
    regular.write_text("keep me")
    with pytest.raises(LabServerError, match="not a socket"):
        prepare_socket_path(str(regular))
    remove_socket(str(regular))
    assert regular.read_text() == "keep me"  # remove_socket only removes sockets


def test_lab_server_process_serves_until_sigterm_and_removes_its_socket(short_dir: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    socket_path = short_dir / "run" / "crio.sock"
    state_path = short_dir / "state.json"
    write_state(state_path, [POD_A])
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.lab.cri_server", "--state", str(state_path),
         "--socket", str(socket_path), "--no-pod-events"],
        cwd=Path(__file__).resolve().parents[2],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        with CriClient(str(socket_path), timeout_s=TIMEOUT_S) as c:
            assert [s.id for s in c.list_ready_sandboxes()] == [POD_A["sandbox_id"]]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert not socket_path.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
