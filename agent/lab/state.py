"""The lab's state file (read by the CRI server, so its schema is fixed) and its lock.

`<state_dir>/state.json` is replaced atomically after every change, under an flock on
`<state_dir>/lock`, so concurrent `podbw lab add` processes never lose each other's pods and
readers never see a half-written file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from agent.lab.config import LabConfig
from agent.lab.errors import LabError
from agent.lab.runtimes import DEFAULT_RUNTIME, runtime_named
from agent.model.pod import Pod


@dataclass
class LabPod:
    """One pod sandbox of the lab, exactly as the state file stores it."""

    sandbox_id: str
    uid: str
    namespace: str
    name: str
    netns_path: str
    attempt: int = 0
    host_network: bool = False
    ip: str = ""
    host_veth: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    created_at_ns: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "sandbox_id": self.sandbox_id,
            "uid": self.uid,
            "namespace": self.namespace,
            "name": self.name,
            "attempt": self.attempt,
            "netns_path": self.netns_path,
            "host_network": self.host_network,
            "ip": self.ip,
            "host_veth": self.host_veth,
            "annotations": dict(self.annotations),
            "labels": dict(self.labels),
            "created_at_ns": self.created_at_ns,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabPod:
        return cls(
            sandbox_id=str(data["sandbox_id"]),
            uid=str(data.get("uid", "")),
            namespace=str(data.get("namespace", "")),
            name=str(data.get("name", "")),
            netns_path=str(data.get("netns_path", "")),
            attempt=int(data.get("attempt", 0)),
            host_network=bool(data.get("host_network", False)),
            ip=str(data.get("ip", "")),
            host_veth=str(data.get("host_veth", "")),
            annotations={str(k): str(v) for k, v in (data.get("annotations") or {}).items()},
            labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()},
            created_at_ns=int(data.get("created_at_ns", 0)),
        )

    def as_pod(self) -> Pod:
        """The shared model record discovery would produce for this sandbox."""
        return Pod(
            sandbox_id=self.sandbox_id,
            uid=self.uid,
            namespace=self.namespace,
            name=self.name,
            netns_path=self.netns_path,
            annotations=dict(self.annotations),
            ip=self.ip,
            created_at_ns=self.created_at_ns,
        )


@dataclass
class LabState:
    name: str
    bridge: str
    subnet: str
    socket: str
    netns_dir: str
    pod_events: bool = True
    cni_bandwidth: bool = False
    runtime: str = DEFAULT_RUNTIME
    """The runtime the lab stands in for (agent/lab/runtimes.py)."""
    pods: list[LabPod] = field(default_factory=list)

    @classmethod
    def new(cls, config: LabConfig, pod_events: bool, cni_bandwidth: bool, runtime: str = DEFAULT_RUNTIME) -> LabState:
        return cls(
            name=config.name,
            bridge=config.bridge,
            subnet=config.subnet,
            socket=config.socket,
            netns_dir=config.netns_dir,
            pod_events=pod_events,
            cni_bandwidth=cni_bandwidth,
            runtime=runtime_named(runtime).name,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pods"] = [p.to_dict() for p in self.pods]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabState:
        return cls(
            name=str(data["name"]),
            bridge=str(data["bridge"]),
            subnet=str(data["subnet"]),
            socket=str(data["socket"]),
            netns_dir=str(data["netns_dir"]),
            pod_events=bool(data.get("pod_events", True)),
            cni_bandwidth=bool(data.get("cni_bandwidth", False)),
            runtime=runtime_named(str(data.get("runtime", DEFAULT_RUNTIME))).name,
            pods=[LabPod.from_dict(p) for p in data.get("pods", [])],
        )

    def find(self, ref: str) -> LabPod:
        """A pod by namespace/name, full sandbox id or unique sandbox id prefix (>= 6 chars)."""
        for pod in self.pods:
            if ref in (pod.key, pod.sandbox_id):
                return pod
        if len(ref) >= 6:
            matches = [p for p in self.pods if p.sandbox_id.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise LabError(f"sandbox id prefix {ref!r} is ambiguous in lab {self.name!r}")
        raise LabError(f"no pod {ref!r} in lab {self.name!r}")


def read_state(config: LabConfig) -> LabState | None:
    """The lab's state, or None when the lab is not up."""
    try:
        with open(config.state_file, encoding="utf-8") as f:
            return LabState.from_dict(json.load(f))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, LabError) as e:
        raise LabError(f"state file {config.state_file} is unreadable: {e}") from e


def write_state(config: LabConfig, state: LabState) -> None:
    _write_json_atomically(config.state_file, state.to_dict())


def _write_json_atomically(path: str, data: Any) -> None:
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=False)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def state_lock(config: LabConfig) -> Iterator[None]:
    """Exclusive lock on the lab; the state dir must exist."""
    fd = os.open(config.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# The pending journal: a pod is recorded here before its namespace is pinned and removed once it
# is in the state file, so a crash between the two leaves nothing `down` cannot find.
def write_pending(config: LabConfig, pod: LabPod) -> None:
    os.makedirs(config.pending_dir, exist_ok=True)
    _write_json_atomically(os.path.join(config.pending_dir, f"{pod.sandbox_id}.json"), pod.to_dict())


def remove_pending(config: LabConfig, sandbox_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(config.pending_dir, f"{sandbox_id}.json"))


def read_pending(config: LabConfig) -> list[LabPod]:
    pods = []
    try:
        names = sorted(os.listdir(config.pending_dir))
    except FileNotFoundError:
        return []
    for entry in names:
        if not entry.endswith(".json"):
            continue
        try:
            with open(os.path.join(config.pending_dir, entry), encoding="utf-8") as f:
                pods.append(LabPod.from_dict(json.load(f)))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return pods
