"""What the stand-in serves and how clients discover it: /version, /api, /api/v1, /apis,
/apis/events.k8s.io[/v1], in the legacy form and in the aggregated one kubectl 1.35 asks for
first (`Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`, answered
with that Content-Type; client-go falls back to the legacy documents otherwise).

Verbs list only what the stand-in implements: pods and namespaces cannot be created or deleted
through it (they come from the lab), events can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.lab.kube_status import Resource

PODS = Resource("", "v1", "pods", "Pod")
NAMESPACES = Resource("", "v1", "namespaces", "Namespace")
CORE_EVENTS = Resource("", "v1", "events", "Event")
EVENTS_V1 = Resource("events.k8s.io", "v1", "events", "Event")

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

SERVER_VERSION = {
    "major": "1",
    "minor": "35",
    "emulationMajor": "1",
    "emulationMinor": "35",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "34",
    "gitVersion": "v1.35.0+podbw-lab",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}
"""A 1.35 server, so kubectl 1.35 reports no version skew; `+podbw-lab` marks the stand-in."""


@dataclass(frozen=True)
class ServedResource:
    resource: Resource
    singular: str
    namespaced: bool
    verbs: tuple[str, ...]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    def legacy(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.resource.name,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.resource.kind,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        return entry

    def aggregated(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "resource": self.resource.name,
            "responseKind": {"group": self.resource.group, "version": self.resource.version, "kind": self.resource.kind},
            "scope": "Namespaced" if self.namespaced else "Cluster",
            "singularResource": self.singular,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        return entry


READ_AND_PATCH = ("get", "list", "patch", "watch")
EVENT_VERBS = ("create", "delete", "get", "list", "patch", "watch")

CORE_RESOURCES = [
    ServedResource(CORE_EVENTS, "event", True, EVENT_VERBS, ("ev",)),
    ServedResource(NAMESPACES, "namespace", False, READ_AND_PATCH, ("ns",)),
    ServedResource(PODS, "pod", True, READ_AND_PATCH, ("po",), ("all",)),
]
EVENTS_GROUP_RESOURCES = [ServedResource(EVENTS_V1, "event", True, EVENT_VERBS, ("ev",))]


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def core_resource_list() -> dict[str, Any]:
    return {"kind": "APIResourceList", "groupVersion": "v1", "resources": [r.legacy() for r in CORE_RESOURCES]}


def _events_group() -> dict[str, Any]:
    version = {"groupVersion": "events.k8s.io/v1", "version": "v1"}
    return {"name": "events.k8s.io", "versions": [version], "preferredVersion": version}


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_events_group()]}


def events_group() -> dict[str, Any]:
    return {"kind": "APIGroup", "apiVersion": "v1", **_events_group()}


def events_resource_list() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "events.k8s.io/v1",
        "resources": [r.legacy() for r in EVENTS_GROUP_RESOURCES],
    }


def _aggregated(group: str, resources: list[ServedResource]) -> dict[str, Any]:
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": [{
            "metadata": {"name": group} if group else {},
            "versions": [{"version": "v1", "resources": [r.aggregated() for r in resources], "freshness": "Current"}],
        }],
    }


def aggregated_core() -> dict[str, Any]:
    return _aggregated("", CORE_RESOURCES)


def aggregated_groups() -> dict[str, Any]:
    return _aggregated("events.k8s.io", EVENTS_GROUP_RESOURCES)
