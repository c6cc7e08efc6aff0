"""The objects the Kubernetes API stand-in serves, built from the lab's pods: Pods as the
apiserver returns a running pod's (one container, phase Running, Ready), Namespaces, and the
time formats and metadata rules they share.

The pod's annotations are the lab's (CRI) annotations at creation; later changes made through
the API live in the stand-in's store only. Its labels are the lab's pod labels without the
`io.kubernetes.pod.*` ones kubelet adds to sandboxes only.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any, Mapping

from agent.lab.kube_names import TOTAL_ANNOTATION_SIZE_MAX_BYTES, label_value_errors, qualified_name_errors
from agent.lab.kube_status import FieldError
from agent.lab.state import LabPod

CONTAINER_NAME = "app"
CONTAINER_IMAGE = "registry.k8s.io/pause:3.10"
"""A lab pod runs nothing but what a test starts in its namespace: the pause image says so."""
IMAGE_ID = "registry.k8s.io/pause@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a"
SANDBOX_ONLY_LABEL_PREFIX = "io.kubernetes.pod."
CONTAINER_ID_SCHEMES = {"crio": "cri-o", "containerd": "containerd"}
DEFAULT_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
]
INITIAL_NAMESPACES = ("default", "kube-system")


# ---- time ---------------------------------------------------------------------------------------


def format_time(unix_s: float) -> str:
    """metav1.Time: RFC 3339 in UTC, whole seconds."""
    return datetime.fromtimestamp(int(unix_s), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(unix_s: float) -> str:
    """metav1.MicroTime: RFC 3339 in UTC with exactly six fractional digits."""
    return datetime.fromtimestamp(unix_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_TIME_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_MICRO_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})")


def parse_time(text: str) -> float:
    """Seconds since the epoch from an RFC 3339 time (Go's time.RFC3339 parse: fraction optional)."""
    match = _TIME_RE.fullmatch(text)
    if match is None:
        raise ValueError(f'parsing time "{text}" as "2006-01-02T15:04:05Z07:00": cannot parse')
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f'parsing time "{text}": {e}') from None
    return parsed.timestamp()


def parse_micro_time(text: str) -> float:
    """As metav1.MicroTime decodes: Go parses with layout RFC3339Micro, which needs exactly six
    fractional digits (a Python isoformat() of a whole second has none, and is refused)."""
    if not _MICRO_TIME_RE.fullmatch(text):
        raise ValueError(f'parsing time "{text}" as "2006-01-02T15:04:05.000000Z07:00": cannot parse')
    return parse_time(text)


def human_duration(seconds: float) -> str:
    """How kubectl and the server's tables print an age (apimachinery duration.HumanDuration)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def since(timestamp: str | None, now_s: float) -> str:
    """The age of a metav1.Time or MicroTime, "<unknown>" when unset (printers' translateTimestampSince)."""
    if not timestamp:
        return "<unknown>"
    try:
        return human_duration(now_s - parse_time(timestamp))
    except ValueError:
        return "<unknown>"


# ---- pods and namespaces ------------------------------------------------------------------------


def host_ip(subnet: str) -> str:
    """The node's address on its pod network: the bridge's gateway, host-local's first address."""
    try:
        return str(next(ipaddress.ip_network(subnet, strict=False).hosts()))
    except (ValueError, StopIteration):
        return "127.0.0.1"


def api_labels(sandbox_labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in sandbox_labels.items() if not k.startswith(SANDBOX_ONLY_LABEL_PREFIX)}


def build_pod(pod: LabPod, node_name: str, node_ip: str, runtime: str) -> dict[str, Any]:
    """The Pod object for a lab pod, without resourceVersion (the store sets it)."""
    created = format_time(pod.created_at_ns / 1e9)
    pod_ip = node_ip if pod.host_network else pod.ip
    container_id = hashlib.sha256(f"{pod.sandbox_id}/{CONTAINER_NAME}".encode()).hexdigest()
    metadata: dict[str, Any] = {
        "name": pod.name,
        "namespace": pod.namespace,
        "uid": pod.uid,
        "creationTimestamp": created,
    }
    labels = api_labels(pod.labels)
    if labels:
        metadata["labels"] = labels
    if pod.annotations:
        metadata["annotations"] = dict(pod.annotations)
    spec: dict[str, Any] = {
        "containers": [{
            "name": CONTAINER_NAME,
            "image": CONTAINER_IMAGE,
            "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent",
        }],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirstWithHostNet" if pod.host_network else "ClusterFirst",
        "serviceAccountName": "default",
        "serviceAccount": "default",
        "nodeName": node_name,
        "securityContext": {},
        "schedulerName": "default-scheduler",
        "tolerations": [dict(t) for t in DEFAULT_TOLERATIONS],
        "priority": 0,
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
    }
    if pod.host_network:
        spec["hostNetwork"] = True
    conditions = [
        {"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": created}
        for kind in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    status: dict[str, Any] = {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": node_ip,
        "hostIPs": [{"ip": node_ip}],
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    status.update({
        "startTime": created,
        "containerStatuses": [{
            "name": CONTAINER_NAME,
            "state": {"running": {"startedAt": created}},
            "lastState": {},
            "ready": True,
            "restartCount": 0,
            "image": CONTAINER_IMAGE,
            "imageID": IMAGE_ID,
            "containerID": f"{CONTAINER_ID_SCHEMES.get(runtime, 'cri-o')}://{container_id}",
            "started": True,
        }],
        "qosClass": "BestEffort",
    })
    return {"kind": "Pod", "apiVersion": "v1", "metadata": metadata, "spec": spec, "status": status}


def build_namespace(name: str, created_s: float) -> dict[str, Any]:
    return {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid4()),
            "creationTimestamp": format_time(created_s),
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def without_api_owned(obj: Mapping[str, Any]) -> dict[str, Any]:
    """obj without what clients may change and the store manages (labels, annotations, RV):
    equal for two versions of an object when the lab's own view of it did not change."""
    metadata = {k: v for k, v in obj.get("metadata", {}).items() if k not in ("labels", "annotations", "resourceVersion")}
    return {**obj, "metadata": metadata}


# ---- metadata rules -----------------------------------------------------------------------------


def metadata_errors(obj: Mapping[str, Any]) -> list[FieldError]:
    """Labels and annotations as ValidateObjectMeta checks them (keys, label values, total size)."""
    errors: list[FieldError] = []
    metadata = obj.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    labels = metadata.get("labels") or {}
    for key in annotations:
        for msg in qualified_name_errors(key.lower()):
            errors.append(FieldError("metadata.annotations", "Invalid", msg, key))
    size = sum(len(k) + len(v) for k, v in annotations.items())
    if size > TOTAL_ANNOTATION_SIZE_MAX_BYTES:
        errors.append(FieldError("metadata.annotations", "Invalid", f"must have at most {TOTAL_ANNOTATION_SIZE_MAX_BYTES} bytes",
                                 ""))
    for key, value in labels.items():
        for msg in qualified_name_errors(key):
            errors.append(FieldError("metadata.labels", "Invalid", msg, key))
        for msg in label_value_errors(value):
            errors.append(FieldError("metadata.labels", "Invalid", msg, value))
    return errors


def string_map_error(obj: Mapping[str, Any], kind: str) -> str | None:
    """The decode error the apiserver answers when labels or annotations are not string maps."""
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return f"{kind} in version \"v1\" cannot be handled as a {kind}: json: cannot unmarshal {_json_type(metadata)} into Go struct field {kind}.metadata of type v1.ObjectMeta"
    for field in ("labels", "annotations"):
        values = (metadata or {}).get(field)
        if values is None:
            continue
        if not isinstance(values, dict):
            return (f"{kind} in version \"v1\" cannot be handled as a {kind}: json: cannot unmarshal {_json_type(values)} "
                    f"into Go struct field ObjectMeta.metadata.{field} of type map[string]string")
        for value in values.values():
            if not isinstance(value, str):
                return (f"{kind} in version \"v1\" cannot be handled as a {kind}: json: cannot unmarshal {_json_type(value)} "
                        f"into Go struct field ObjectMeta.metadata.{field} of type string")
    return None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string" if isinstance(value, str) else json.dumps(value)
