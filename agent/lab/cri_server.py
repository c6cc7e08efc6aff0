"""The lab's runtime impersonation: a CRI v1 RuntimeService on a unix socket, served from the
lab's state file (`<state_dir>/state.json`, rewritten atomically by the lab's network code).

Answers as CRI-O 1.31 or containerd 2.x does for the calls podbw makes: Version with that
runtime's name, verbose info JSON in that runtime's layout (agent/lab/sandbox_info.py), NODE
network mode for host-network pods, NOT_FOUND for unknown sandboxes, and GetContainerEvents
that either ends at once (CRI-O's default, enable_pod_events=false) or reports sandboxes
appearing and disappearing from the state file.

    python -m agent.lab.cri_server --state PATH --socket PATH [--runtime crio|containerd]
        [--pod-events | --no-pod-events]

State file: {"name": ..., "pods": [{"sandbox_id", "uid", "namespace", "name", "attempt",
"netns_path", "host_network", "ip", "host_veth", "annotations", "labels", "created_at_ns"}]};
a missing file means no pods. A pod may carry "ready": false to appear as SANDBOX_NOTREADY.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc

from agent.cri import runtime_pb2 as pb
from agent.lab import sandbox_info
from agent.lab.errors import LabError
from agent.lab.runtimes import CRIO, DEFAULT_RUNTIME, RUNTIMES, Runtime, runtime_named

log = logging.getLogger(__name__)

RUNTIME_API_VERSION = "v1"
KUBELET_API_VERSION = "0.1.0"
SERVICE_NAME = "runtime.v1.RuntimeService"
WORKER_THREADS = 16
"""Each open event stream holds one worker; 16 leaves room for a few agents plus unary calls."""
STATE_POLL_INTERVAL_S = 0.05


@dataclass(frozen=True)
class LabSandbox:
    """One pod of the lab state file."""

    sandbox_id: str
    uid: str
    namespace: str
    name: str
    attempt: int
    netns_path: str
    host_network: bool
    ip: str
    ready: bool
    created_at_ns: int
    annotations: dict[str, str] = field(hash=False)
    labels: dict[str, str] = field(hash=False)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> LabSandbox:
        return cls(
            sandbox_id=str(record["sandbox_id"]),
            uid=str(record.get("uid", "")),
            namespace=str(record.get("namespace", "")),
            name=str(record.get("name", "")),
            attempt=int(record.get("attempt", 0)),
            netns_path=str(record.get("netns_path", "")),
            host_network=bool(record.get("host_network", False)),
            ip=str(record.get("ip", "")),
            ready=bool(record.get("ready", True)),
            created_at_ns=int(record.get("created_at_ns", 0)),
            annotations={str(k): str(v) for k, v in (record.get("annotations") or {}).items()},
            labels={str(k): str(v) for k, v in (record.get("labels") or {}).items()},
        )

    def metadata(self) -> pb.PodSandboxMetadata:
        return pb.PodSandboxMetadata(
            name=self.name, uid=self.uid, namespace=self.namespace, attempt=self.attempt
        )

    def state(self) -> int:
        return pb.SANDBOX_READY if self.ready else pb.SANDBOX_NOTREADY

    def to_sandbox(self) -> pb.PodSandbox:
        return pb.PodSandbox(
            id=self.sandbox_id,
            metadata=self.metadata(),
            state=self.state(),
            created_at=self.created_at_ns,
            labels=self.labels,
            annotations=self.annotations,
            runtime_handler="",
        )

    def to_status(self, state: int | None = None) -> pb.PodSandboxStatus:
        network_mode = pb.NODE if self.host_network else pb.POD
        return pb.PodSandboxStatus(
            id=self.sandbox_id,
            metadata=self.metadata(),
            state=self.state() if state is None else state,
            created_at=self.created_at_ns,
            network=pb.PodSandboxNetworkStatus(ip=self.ip),
            linux=pb.LinuxPodSandboxStatus(
                namespaces=pb.Namespace(
                    options=pb.NamespaceOption(network=network_mode, pid=pb.POD, ipc=pb.POD)
                )
            ),
            labels=self.labels,
            annotations=self.annotations,
            runtime_handler="",
        )

    def verbose_info(self, runtime: str) -> dict[str, str]:
        return sandbox_info.verbose_info(runtime, self)


class StateFile:
    """Reads the state file, re-parsing only when its identity, mtime or size changed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._key: tuple[int, int, int] | None = None
        self._pods: dict[str, LabSandbox] = {}

    def pods(self) -> dict[str, LabSandbox]:
        """sandbox_id -> pod; {} when the file is missing. Raises ValueError if malformed."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        # The lab renames a new file into place, so the inode changes on every write.
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if key == self._key:
                return self._pods
        pods = _parse_state(self.path)
        with self._lock:
            self._key, self._pods = key, pods
        return pods


def _parse_state(path: str) -> dict[str, LabSandbox]:
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"lab state {path}: {exc}") from None
    try:
        records = document.get("pods") or []
        pods = [LabSandbox.from_record(record) for record in records]
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"lab state {path}: bad pod record: {exc!r}") from None
    return {pod.sandbox_id: pod for pod in pods}


class LabRuntimeService:
    """The RuntimeService handlers; one instance serves all connections."""

    def __init__(self, state: StateFile, pod_events: bool, runtime: Runtime = CRIO) -> None:
        self.state = state
        self.pod_events = pod_events
        self.runtime = runtime
        self.stopping = threading.Event()

    def _pods(self, context: grpc.ServicerContext) -> dict[str, LabSandbox]:
        try:
            return self.state.pods()
        except ValueError as exc:
            context.abort(grpc.StatusCode.INTERNAL, str(exc))
            raise  # abort() raises; this keeps type checkers honest

    def version(self, request: pb.VersionRequest, context: grpc.ServicerContext) -> pb.VersionResponse:
        return pb.VersionResponse(
            version=KUBELET_API_VERSION,
            runtime_name=self.runtime.runtime_name,
            runtime_version=self.runtime.runtime_version,
            runtime_api_version=RUNTIME_API_VERSION,
        )

    def list_pod_sandbox(
        self, request: pb.ListPodSandboxRequest, context: grpc.ServicerContext
    ) -> pb.ListPodSandboxResponse:
        pods = list(self._pods(context).values())
        if request.HasField("filter"):
            wanted = request.filter
            if wanted.id:
                pods = _match_id(pods, wanted.id)
            if wanted.HasField("state"):
                pods = [pod for pod in pods if pod.state() == wanted.state.state]
            for key, value in wanted.label_selector.items():
                pods = [pod for pod in pods if pod.labels.get(key) == value]
        return pb.ListPodSandboxResponse(items=[pod.to_sandbox() for pod in pods])

    def pod_sandbox_status(
        self, request: pb.PodSandboxStatusRequest, context: grpc.ServicerContext
    ) -> pb.PodSandboxStatusResponse:
        matches = _match_id(list(self._pods(context).values()), request.pod_sandbox_id)
        if not request.pod_sandbox_id or len(matches) != 1:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f'could not find pod "{request.pod_sandbox_id}": PodSandbox with ID starting '
                f"with {request.pod_sandbox_id} not found: not found",
            )
        pod = matches[0]
        return pb.PodSandboxStatusResponse(
            status=pod.to_status(),
            info=pod.verbose_info(self.runtime.name) if request.verbose else {},
            timestamp=time.time_ns(),
        )

    def get_container_events(
        self, request: pb.GetEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ContainerEventResponse]:
        if not self.pod_events:
            return  # CRI-O without enable_pod_events: the stream ends at once
        known = self._pods_or_empty()
        # Headers tell the client we have subscribed (tests wait for them; see EventStream).
        context.send_initial_metadata(())
        while context.is_active() and not self.stopping.is_set():
            self.stopping.wait(STATE_POLL_INTERVAL_S)
            try:
                current = self.state.pods()
            except ValueError as exc:
                log.warning("%s; keeping the previous pod list", exc)
                continue
            if current is known:
                continue
            for sandbox_id in current.keys() - known.keys():
                pod = current[sandbox_id]
                yield _event(pod, pb.CONTAINER_CREATED_EVENT, pb.SANDBOX_NOTREADY)
                yield _event(pod, pb.CONTAINER_STARTED_EVENT, pb.SANDBOX_READY)
            for sandbox_id in known.keys() - current.keys():
                pod = known[sandbox_id]
                yield _event(pod, pb.CONTAINER_STOPPED_EVENT, pb.SANDBOX_NOTREADY)
                yield _event(pod, pb.CONTAINER_DELETED_EVENT, pb.SANDBOX_NOTREADY)
            known = current

    def _pods_or_empty(self) -> dict[str, LabSandbox]:
        try:
            return self.state.pods()
        except ValueError as exc:
            log.warning("%s; starting the event stream with no pods", exc)
            return {}

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Any, request_type: Any, response_type: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=request_type.FromString,
                response_serializer=response_type.SerializeToString,
            )

        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Version": unary(self.version, pb.VersionRequest, pb.VersionResponse),
                "ListPodSandbox": unary(
                    self.list_pod_sandbox, pb.ListPodSandboxRequest, pb.ListPodSandboxResponse
                ),
                "PodSandboxStatus": unary(
                    self.pod_sandbox_status, pb.PodSandboxStatusRequest, pb.PodSandboxStatusResponse
                ),
                "GetContainerEvents": grpc.unary_stream_rpc_method_handler(
                    self.get_container_events,
                    request_deserializer=pb.GetEventsRequest.FromString,
                    response_serializer=pb.ContainerEventResponse.SerializeToString,
                ),
            },
        )


def _match_id(pods: list[LabSandbox], wanted: str) -> list[LabSandbox]:
    """CRI-O resolves ids by unique prefix; an ambiguous prefix matches nothing."""
    exact = [pod for pod in pods if pod.sandbox_id == wanted]
    if exact:
        return exact
    prefixed = [pod for pod in pods if pod.sandbox_id.startswith(wanted)]
    return prefixed if len(prefixed) == 1 else []


def _event(pod: LabSandbox, event_type: int, state: int) -> pb.ContainerEventResponse:
    return pb.ContainerEventResponse(
        container_id=pod.sandbox_id,  # CRI-O's sandbox events name the sandbox itself
        container_event_type=event_type,
        created_at=time.time_ns(),
        pod_sandbox_status=pod.to_status(state),
    )


class LabServerError(Exception):
    """The lab CRI server cannot start."""


def serve(state_path: str, socket_path: str, pod_events: bool, runtime: str = DEFAULT_RUNTIME) -> grpc.Server:
    """Start serving on socket_path and return the running server; stop it with .stop(0)."""
    try:
        flavour = runtime_named(runtime)
    except LabError as exc:
        raise LabServerError(f"lab CRI server: {exc}") from None
    service = LabRuntimeService(StateFile(state_path), pod_events, flavour)
    executor = ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="lab-cri")
    server = grpc.server(executor, handlers=[service.handler()])
    try:
        port = server.add_insecure_port(f"unix://{os.path.abspath(socket_path)}")
    except RuntimeError as exc:
        executor.shutdown(wait=False)
        raise LabServerError(f"lab CRI server: cannot listen on {socket_path}: {exc}") from None
    if port == 0:
        executor.shutdown(wait=False)
        raise LabServerError(f"lab CRI server: cannot listen on {socket_path}")
    server.start()

    def release_when_stopped() -> None:
        # grpc.Server.stop() leaves our executor alone: end the streams and free its threads.
        server.wait_for_termination()
        service.stopping.set()
        executor.shutdown(wait=True)

    threading.Thread(target=release_when_stopped, name="lab-cri-reaper", daemon=True).start()
    return server


def prepare_socket_path(socket_path: str) -> None:
    """Create the parent directory; remove a stale socket, refuse a live one or a non-socket."""
    os.makedirs(os.path.dirname(os.path.abspath(socket_path)), exist_ok=True)
    try:
        st = os.lstat(socket_path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise LabServerError(f"lab CRI server: {socket_path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(socket_path)
    except OSError:
        os.unlink(socket_path)  # nobody listens: left over from a killed server
        return
    finally:
        probe.close()
    raise LabServerError(f"lab CRI server: another server is listening on {socket_path}")


def remove_socket(socket_path: str) -> None:
    try:
        if stat.S_ISSOCK(os.lstat(socket_path).st_mode):
            os.unlink(socket_path)
    except FileNotFoundError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent.lab.cri_server", description="The podbw lab's CRI-O / containerd stand-in."
    )
    parser.add_argument("--state", required=True, help="lab state file (state.json)")
    parser.add_argument("--socket", required=True, help="unix socket to serve on")
    parser.add_argument("--runtime", choices=sorted(RUNTIMES), default=DEFAULT_RUNTIME,
                        help="the runtime to answer as (default: %(default)s)")
    parser.add_argument(
        "--pod-events",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="stream sandbox events like CRI-O with enable_pod_events=true (default: off, "
        "as CRI-O's default)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        prepare_socket_path(args.socket)
        server = serve(args.state, args.socket, args.pod_events, args.runtime)
    except (LabServerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log.info("lab CRI server on %s as %s (state %s, pod events %s)", args.socket, args.runtime, args.state,
             "on" if args.pod_events else "off")
    try:
        while not stop.wait(0.5):  # a timed wait lets the signal handler run promptly
            pass
    finally:
        server.stop(grace=1.0).wait()
        remove_socket(args.socket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
