"""Which value of each podbw annotation is in force for a pod, and where it came from (pure).

Per key: the annotations file, then the pod's own value (the API's current one when the API
knows the pod, else CRI's from sandbox creation), then its namespace's default. When the API
knows the pod, CRI's value of a key the API no longer has does not come back: removing an
annotation through the API removes the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Mapping

from agent.model.annotations import ALL_KEYS, KEYS_BY_DIRECTION
from agent.model.direction import Direction


class LimitSource(StrEnum):
    FILE = "file"
    """The annotations file (--annotations-file)."""
    POD = "pod"
    """The pod's own annotation, as the Kubernetes API has it now."""
    CRI = "cri"
    """The pod's own annotation as CRI reports it (at sandbox creation): the API does not know the pod."""
    NAMESPACE = "namespace"
    """Its namespace's `podbw.io/default-*` annotation."""


NAMESPACE_DEFAULT_KEYS: dict[str, str] = {
    key: "podbw.io/default-" + key.split("/", 1)[1] for key in ALL_KEYS
}
"""Pod key -> the Namespace annotation giving its default: `kubernetes.io/ingress-bandwidth` ->
`podbw.io/default-ingress-bandwidth`, `podbw.io/egress-burst` -> `podbw.io/default-egress-burst`."""


@dataclass(frozen=True, slots=True)
class Resolved:
    annotations: dict[str, str]
    """The pod's annotations with the podbw keys as in force."""
    sources: dict[str, LimitSource] = field(default_factory=dict)
    """Where each podbw key in force came from."""


def resolve(
    cri: Mapping[str, str],
    api: Mapping[str, str] | None = None,
    namespace: Mapping[str, str] | None = None,
    file: Mapping[str, str] | None = None,
) -> Resolved:
    """The annotations in force. `cri`: the sandbox's (all of them); `api`: the API pod's, None
    when the API does not know the pod; `namespace`: the Namespace's annotations, None when
    unknown; `file`: the annotations file's entry for the pod, None when it has none."""
    annotations = {key: value for key, value in cri.items() if key not in ALL_KEYS}
    if file:
        annotations.update((key, value) for key, value in file.items() if key not in ALL_KEYS)
    own, own_source = (cri, LimitSource.CRI) if api is None else (api, LimitSource.POD)
    sources: dict[str, LimitSource] = {}
    for key in ALL_KEYS:
        if file and key in file:
            annotations[key], sources[key] = file[key], LimitSource.FILE
        elif key in own:
            annotations[key], sources[key] = own[key], own_source
        elif namespace and NAMESPACE_DEFAULT_KEYS[key] in namespace:
            annotations[key], sources[key] = namespace[NAMESPACE_DEFAULT_KEYS[key]], LimitSource.NAMESPACE
    return Resolved(annotations, sources)


def rate_source(sources: Mapping[str, str], direction: Direction) -> str | None:
    """Where the rate of `direction` came from (None: no rate asked for)."""
    source = sources.get(KEYS_BY_DIRECTION[direction][0])
    return None if source is None else str(source)
