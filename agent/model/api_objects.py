"""What podbw keeps of the Kubernetes API's objects: a pod's identity and podbw annotations, a
namespace's podbw defaults. The API's own objects never leave the adapter (agent.kube)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True, slots=True)
class ApiPod:
    uid: str
    """metadata.uid: how a pod is joined to its CRI sandbox."""
    namespace: str
    name: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    """Its podbw annotations only (agent.model.annotations.ALL_KEYS), as the API has them now."""
    resource_version: str = ""

    @property
    def key(self) -> str:
        return self.uid


@dataclass(frozen=True, slots=True)
class ApiNamespace:
    name: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    """Its podbw defaults only (agent.model.precedence.NAMESPACE_DEFAULT_KEYS)."""
    resource_version: str = ""

    @property
    def key(self) -> str:
        return self.name
