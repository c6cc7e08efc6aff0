"""The annotations in force for a pod, from every place they can come from: the one spot that
applies agent.model.precedence (the registry calls it for every pod it publishes)."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping, Protocol

from agent.model.api_objects import ApiNamespace, ApiPod
from agent.model.pod import Pod
from agent.model.precedence import resolve

Overrides = Callable[[], Mapping[str, Mapping[str, str]]]
"""The annotations file's entries by pod key (agent.discovery.overrides_file.OverridesFile.current)."""


class ApiView(Protocol):
    def pod(self, uid: str) -> ApiPod | None: ...

    def namespace(self, name: str) -> ApiNamespace | None: ...


class AnnotationResolver:
    def __init__(self, api: ApiView | None = None, overrides: Overrides = lambda: {}) -> None:
        self._api = api
        self._overrides = overrides

    def resolve(self, pod: Pod) -> Pod:
        """`pod` (as its source reported it) with its podbw annotations in force and their sources."""
        api_pod = self._api.pod(pod.uid) if self._api is not None and pod.uid else None
        namespace = self._api.namespace(pod.namespace) if self._api is not None and pod.namespace else None
        resolved = resolve(
            pod.annotations,
            api_pod.annotations if api_pod is not None else None,
            namespace.annotations if namespace is not None else None,
            self._overrides().get(pod.key),
        )
        return replace(pod, annotations=resolved.annotations, annotation_sources=resolved.sources)
