"""A small CRI v1 RuntimeService client: the four calls podbw needs, as plain records.

One gRPC channel per client, reused for every call; every unary call has a deadline, so a
wedged runtime (or something that is not a runtime) costs at most timeout_s per call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from agent.cri import runtime_pb2 as pb
from agent.cri.endpoint import Endpoint
from agent.cri.errors import CriError, CriInfoError
from agent.cri.info import netns_path_from_info
from agent.cri.rpc_errors import error_from_rpc

SERVICE = "/runtime.v1.RuntimeService/"
MAX_RECEIVE_MESSAGE_BYTES = 16 * 1024 * 1024
"""ListPodSandbox on a node with hundreds of annotated pods exceeds gRPC's 4 MiB default."""
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
    # gRPC's own reconnect backoff grows to 120 s and calls fail fast while it waits, so keep
    # it short and let the caller's Backoff pace retries after a runtime restart. The minimum
    # is also gRPC's connect-attempt timeout: 1 s tolerates a busy runtime.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
)

EVENT_TYPE_NAMES = {
    pb.CONTAINER_CREATED_EVENT: "CREATED",
    pb.CONTAINER_STARTED_EVENT: "STARTED",
    pb.CONTAINER_STOPPED_EVENT: "STOPPED",
    pb.CONTAINER_DELETED_EVENT: "DELETED",
}
UNKNOWN_EVENT = "UNKNOWN"

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class RuntimeVersion:
    runtime_name: str
    runtime_version: str
    runtime_api_version: str


@dataclass(frozen=True)
class SandboxSummary:
    """One entry of ListPodSandbox."""

    id: str
    name: str
    uid: str
    namespace: str
    attempt: int
    ready: bool
    created_at_ns: int
    annotations: dict[str, str] = field(hash=False)


@dataclass(frozen=True)
class SandboxDetails:
    """PodSandboxStatus(verbose) reduced to what discovery needs."""

    id: str
    name: str
    uid: str
    namespace: str
    attempt: int
    ready: bool
    created_at_ns: int
    annotations: dict[str, str] = field(hash=False)
    netns_path: str | None = None
    """Pinned network namespace from the verbose info; None when the runtime names none."""
    host_network: bool = False
    """The pod uses the node's namespace; its pin is the host's own netns, never shape it."""
    ip: str = ""


@dataclass(frozen=True)
class SandboxEvent:
    """One GetContainerEvents message."""

    container_id: str
    event_type: str
    """CREATED, STARTED, STOPPED, DELETED or UNKNOWN."""
    created_at_ns: int
    sandbox_id: str
    is_sandbox: bool
    """The event is about the sandbox itself (CRI-O sets container_id = sandbox id then)."""


class EventStream(Iterator[SandboxEvent]):
    """Iterator over a GetContainerEvents stream; cancel() ends it from any thread."""

    def __init__(self, call: Any, endpoint: Endpoint, timeout_s: float | None,
                 client_closed: Callable[[], bool]) -> None:
        self._call = call
        self._endpoint = endpoint
        self._timeout_s = timeout_s
        self._client_closed = client_closed
        self._cancelled = False

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> SandboxEvent:
        try:
            response = next(self._call)
        except grpc.RpcError as err:
            # Our own cancel() or close() ends the stream quietly; anything else is the runtime's.
            if self._cancelled or self._client_closed():
                raise StopIteration from None
            raise error_from_rpc(self._endpoint, "GetContainerEvents", err, self._timeout_s) from None
        return _event_from_response(response)

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()


class CriClient:
    """Client for a CRI v1 runtime on a unix socket (`unix:///path` or a bare path)."""

    def __init__(self, endpoint: str, timeout_s: float = 2.0) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.endpoint = Endpoint.parse(endpoint)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._closed = False

    def __enter__(self) -> CriClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel; open event streams end. Safe to call twice."""
        with self._lock:
            self._closed = True
            channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def version(self) -> RuntimeVersion:
        response = self._unary("Version", pb.VersionRequest(version="v1"), pb.VersionResponse)
        return RuntimeVersion(
            runtime_name=response.runtime_name,
            runtime_version=response.runtime_version,
            runtime_api_version=response.runtime_api_version,
        )

    def list_ready_sandboxes(self) -> list[SandboxSummary]:
        # An explicit state, even READY (0), is what makes the runtime filter: CRI-O checks presence.
        request = pb.ListPodSandboxRequest(
            filter=pb.PodSandboxFilter(state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY))
        )
        response = self._unary("ListPodSandbox", request, pb.ListPodSandboxResponse)
        return [
            SandboxSummary(
                id=item.id,
                name=item.metadata.name,
                uid=item.metadata.uid,
                namespace=item.metadata.namespace,
                attempt=item.metadata.attempt,
                ready=item.state == pb.SANDBOX_READY,
                created_at_ns=item.created_at,
                annotations=dict(item.annotations),
            )
            for item in response.items
        ]

    def sandbox_status(self, sandbox_id: str) -> SandboxDetails:
        """Verbose status of one sandbox; CriNotFound when the runtime no longer has it."""
        request = pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True)
        response = self._unary("PodSandboxStatus", request, pb.PodSandboxStatusResponse)
        status = response.status
        try:
            netns_path = netns_path_from_info(response.info)
        except CriInfoError as exc:
            raise CriInfoError(f"CRI endpoint {self.endpoint}: sandbox {sandbox_id}: {exc}") from None
        return SandboxDetails(
            id=status.id,
            name=status.metadata.name,
            uid=status.metadata.uid,
            namespace=status.metadata.namespace,
            attempt=status.metadata.attempt,
            ready=status.state == pb.SANDBOX_READY,
            created_at_ns=status.created_at,
            annotations=dict(status.annotations),
            netns_path=netns_path,
            host_network=status.linux.namespaces.options.network == pb.NODE,
            ip=status.network.ip,
        )

    def events(self, timeout_s: float | None = None) -> EventStream:
        """Subscribe to GetContainerEvents. Iteration ends when the server ends the stream
        (at once on CRI-O without enable_pod_events), on cancel() or close(); after timeout_s
        (None: never) it raises CriUnavailable like any other broken stream."""
        channel = self._ready_channel()
        call = channel.unary_stream(
            SERVICE + "GetContainerEvents",
            request_serializer=pb.GetEventsRequest.SerializeToString,
            response_deserializer=pb.ContainerEventResponse.FromString,
        )(pb.GetEventsRequest(), timeout=timeout_s)
        return EventStream(call, self.endpoint, timeout_s, lambda: self._closed)

    def _unary(self, method: str, request: Message, response_type: type[M]) -> M:
        channel = self._ready_channel()
        # An answer that is not valid protobuf (DecodeError in FromString) comes back from gRPC
        # as INTERNAL "Exception deserializing response!", which rpc_errors reports as CriNotCri.
        stub = channel.unary_unary(
            SERVICE + method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        try:
            return stub(request, timeout=self.timeout_s)
        except grpc.RpcError as err:
            raise error_from_rpc(self.endpoint, method, err, self.timeout_s) from None

    def _ready_channel(self) -> grpc.Channel:
        # Checked on every call: after a runtime restart the socket may be gone for a while,
        # and this names the cause where gRPC would only say UNAVAILABLE.
        self.endpoint.check_socket()
        with self._lock:
            if self._closed:
                raise CriError(f"CRI endpoint {self.endpoint}: client is closed")
            if self._channel is None:
                self._channel = grpc.insecure_channel(
                    self.endpoint.grpc_target, options=list(CHANNEL_OPTIONS)
                )
            return self._channel


def _event_from_response(response: pb.ContainerEventResponse) -> SandboxEvent:
    sandbox_id = response.pod_sandbox_status.id
    return SandboxEvent(
        container_id=response.container_id,
        event_type=EVENT_TYPE_NAMES.get(response.container_event_type, UNKNOWN_EVENT),
        created_at_ns=response.created_at,
        sandbox_id=sandbox_id,
        is_sandbox=bool(sandbox_id) and response.container_id == sandbox_id,
    )
