"""Pod Events through the API (events.k8s.io/v1): what the agent's EventRecorder posts to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from agent.kube.client_slot import ClientSlot
from agent.kube.errors import classify

if TYPE_CHECKING:
    from lightkube import Client


class ApiEventSink:
    """Creates Events and merge-patches their series; every failure is a KubeError."""

    def __init__(self, client_factory: Callable[[], Client]) -> None:
        self._slot = ClientSlot(client_factory, "pod Events")

    def create_event(self, namespace: str, body: dict) -> None:
        from lightkube.resources.events_v1 import Event

        name = body.get("metadata", {}).get("name", "")
        try:
            self._slot.get().create(Event.from_dict(body), namespace=namespace)
        except Exception as err:  # the library's errors are many; each becomes a KubeError
            self._slot.drop()
            raise classify(f"create Event {namespace}/{name}", err) from err

    def patch_event(self, namespace: str, name: str, patch: dict) -> None:
        from lightkube.resources.events_v1 import Event
        from lightkube.types import PatchType

        try:
            self._slot.get().patch(Event, name, patch, namespace=namespace, patch_type=PatchType.MERGE)
        except Exception as err:
            self._slot.drop()
            raise classify(f"patch Event {namespace}/{name}", err) from err

    def close(self) -> None:
        self._slot.drop()
