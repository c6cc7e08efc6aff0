"""Server-side printing: the `meta.k8s.io/v1` Table `kubectl get` asks for (Accept
`application/json;as=Table;v=v1;g=meta.k8s.io`). Columns and cells follow
pkg/printers/internalversion/printers.go for pods, namespaces and core/v1 events; the server
fills every column, kubectl shows the priority-1 ones only with `-o wide`."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from agent.lab.kube_objects import since

_NAME_DOC = "Name must be unique within a namespace."
_AGE_DOC = "CreationTimestamp is a timestamp representing the server time when this object was created."


def _column(name: str, description: str, priority: int = 0, fmt: str = "") -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": "string", "format": fmt, "description": description, "priority": priority}
    return column


POD_COLUMNS = [
    _column("Name", _NAME_DOC, fmt="name"),
    _column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _column("Status", "The aggregate status of the containers in this pod."),
    _column("Restarts", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    _column("Age", _AGE_DOC),
    _column("IP", "podIP address allocated to the pod.", priority=1),
    _column("Node", "NodeName indicates in which node this pod is scheduled.", priority=1),
    _column("Nominated Node", "nominatedNodeName is set when this pod preempts other pods on the node.", priority=1),
    _column("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.", priority=1),
]

NAMESPACE_COLUMNS = [
    _column("Name", _NAME_DOC, fmt="name"),
    _column("Status", "The status of the namespace"),
    _column("Age", _AGE_DOC),
]

EVENT_COLUMNS = [
    _column("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
    _column("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
    _column("Reason", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    _column("Object", "The object that this event is about."),
    _column("Subobject", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.", priority=1),
    _column("Source", "The component reporting this event. Should be a short machine understandable string.", priority=1),
    _column("Message", "A human-readable description of the status of this operation."),
    _column("First Seen", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)", priority=1),
    _column("Count", "The number of times this event has occurred.", priority=1),
    _column("Name", _NAME_DOC, priority=1, fmt="name"),
]


def pod_cells(pod: Mapping[str, Any], now_s: float) -> list[Any]:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    if meta.get("deletionTimestamp"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    return [
        meta.get("name", ""),
        f"{ready}/{len(containers)}",
        reason,
        str(restarts),
        since(meta.get("creationTimestamp"), now_s),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        f"{len(gates)}" if gates else "<none>",
    ]


def namespace_cells(namespace: Mapping[str, Any], now_s: float) -> list[Any]:
    meta = namespace.get("metadata", {})
    return [meta.get("name", ""), namespace.get("status", {}).get("phase", ""), since(meta.get("creationTimestamp"), now_s)]


def event_cells(event: Mapping[str, Any], now_s: float) -> list[Any]:
    """A core/v1 Event's row; events made through events.k8s.io have eventTime and series only."""
    first = since(event.get("firstTimestamp"), now_s) if event.get("firstTimestamp") else since(event.get("eventTime"), now_s)
    last = since(event.get("lastTimestamp"), now_s) if event.get("lastTimestamp") else first
    count = event.get("count") or 0
    series = event.get("series")
    if series:
        last = since(series.get("lastObservedTime"), now_s)
        count = series.get("count", 0)
    elif count == 0:
        count = 1  # a singleton event has no count in the new API
    involved = event.get("involvedObject") or {}
    kind = str(involved.get("kind", "")).lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    return [
        last,
        event.get("type", ""),
        event.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        _event_source(event),
        str(event.get("message", "")).strip(),
        first,
        int(count),
        event.get("metadata", {}).get("name", ""),
    ]


def _event_source(event: Mapping[str, Any]) -> str:
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent", "")
    host = source.get("host") or event.get("reportingInstance", "")
    return f"{component}, {host}" if host else component


TABLES: dict[str, tuple[list[dict[str, Any]], Callable[[Mapping[str, Any], float], list[Any]]]] = {
    "pods": (POD_COLUMNS, pod_cells),
    "namespaces": (NAMESPACE_COLUMNS, namespace_cells),
    "events": (EVENT_COLUMNS, event_cells),
}


def table(resource: str, objects: list[Mapping[str, Any]], list_meta: dict[str, Any], include_object: str,
          now_s: float, api_version: str = "meta.k8s.io/v1") -> dict[str, Any]:
    """A Table of objects (core forms); include_object is None, Metadata (the default) or Object."""
    columns, cells = TABLES[resource]
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": cells(obj, now_s)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": api_version, "metadata": obj.get("metadata", {})}
        rows.append(row)
    return {"kind": "Table", "apiVersion": api_version, "metadata": list_meta, "columnDefinitions": columns, "rows": rows}
