"""List and watch one kind of API object through lightkube, as typed records (agent.model.api_objects).

The library does the protocol: the list's pagination and resourceVersion, the watch stream, its
resumption from the last resourceVersion when the server ends it, bookmarks (asked for by
ApiTransport). This module picks the objects, keeps what podbw needs of them, and turns every
library error into a KubeError. The reflector (agent.kube.reflector) decides what to do next.

Pods and namespaces are read as lightkube's generic resources: only their metadata is decoded.
A BOOKMARK's object is an empty object of the kind (a Pod's has `spec.containers: null`), which
the typed Pod model refuses; and a pod's spec and status are not podbw's to pay for.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, TypeVar

from agent.kube.client_slot import ClientSlot
from agent.kube.errors import classify
from agent.kube.reflector import Listing, WatchEvent
from agent.model.annotations import ALL_KEYS
from agent.model.api_objects import ApiNamespace, ApiPod
from agent.model.precedence import NAMESPACE_DEFAULT_KEYS

if TYPE_CHECKING:
    from lightkube import Client

LIST_CHUNK = 500
"""Objects per list page: a node has at most a few hundred pods; a cluster may have thousands of namespaces."""
WATCH_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})

Record = TypeVar("Record", ApiPod, ApiNamespace)


def _kept(annotations: dict[str, str] | None, keys: Any) -> dict[str, str]:
    return {key: value for key, value in (annotations or {}).items() if key in keys}


def pod_record(obj: Any) -> ApiPod | None:
    """What podbw keeps of an API Pod; None when it has no uid (not a real pod object)."""
    meta = obj.metadata
    if meta is None or not meta.uid:
        return None
    return ApiPod(
        uid=meta.uid,
        namespace=meta.namespace or "",
        name=meta.name or "",
        annotations=_kept(meta.annotations, ALL_KEYS),
        resource_version=meta.resourceVersion or "",
    )


_DEFAULT_KEYS = frozenset(NAMESPACE_DEFAULT_KEYS.values())


def namespace_record(obj: Any) -> ApiNamespace | None:
    """What podbw keeps of an API Namespace; None when it has no name."""
    meta = obj.metadata
    if meta is None or not meta.name:
        return None
    return ApiNamespace(
        name=meta.name,
        annotations=_kept(meta.annotations, _DEFAULT_KEYS),
        resource_version=meta.resourceVersion or "",
    )


class ResourceClient(Generic[Record]):
    """Lists and watches one resource (optionally with a field selector). Not thread-safe, but
    close() may be called from any thread to end a watch that blocks. After an error the
    lightkube client is dropped (a failed watch may hold its connection) and made again."""

    def __init__(
        self,
        what: str,
        resource: type,
        record: Callable[[Any], Record | None],
        client_factory: Callable[[], Client],
        fields: dict[str, str] | None = None,
    ) -> None:
        self.what = what
        """`pods on node N` or `namespaces`, for messages."""
        self._resource = resource
        self._record = record
        self._fields = fields
        self._slot = ClientSlot(client_factory, what)

    def list(self) -> Listing[Record]:
        try:
            listing = self._lightkube().list(
                self._resource, namespace="*" if self._namespaced else None, chunk_size=LIST_CHUNK,
                fields=self._fields,
            )
            items = tuple(record for obj in listing if (record := self._record(obj)) is not None)
            return Listing(items, listing.resourceVersion or "")
        except Exception as err:  # the library's errors are many; each becomes a KubeError
            self._drop()
            raise classify(f"list {self.what}", err) from err

    def watch(self, resource_version: str, timeout_s: int) -> Iterator[WatchEvent[Record]]:
        """Events after `resource_version`, for as long as the server keeps the watch open and
        then from a new watch where it stopped (lightkube resumes it); each request asks the
        server to end it after timeout_s."""
        from lightkube.types import on_error_raise

        try:
            stream = self._lightkube().watch(
                self._resource, namespace="*" if self._namespaced else None, fields=self._fields,
                server_timeout=timeout_s, resource_version=resource_version, on_error=on_error_raise,
            )
            for kind, obj in stream:
                if kind not in WATCH_TYPES:
                    continue
                rv = (obj.metadata.resourceVersion if obj.metadata else None) or ""
                if kind == "BOOKMARK":
                    yield WatchEvent(kind, None, rv)
                elif (record := self._record(obj)) is not None:
                    yield WatchEvent(kind, record, rv)
        except GeneratorExit:
            self._drop()  # the consumer stopped: the stream's connection goes with the client
            raise
        except Exception as err:
            self._drop()
            raise classify(f"watch {self.what} from resourceVersion {resource_version}", err) from err

    def close(self) -> None:
        self._drop()

    @property
    def _namespaced(self) -> bool:
        from lightkube.core.resource import NamespacedResource

        return issubclass(self._resource, NamespacedResource)

    def _lightkube(self) -> Client:
        return self._slot.get()

    def _drop(self) -> None:
        self._slot.drop()


@functools.cache
def _generic_resources() -> tuple[type, type]:
    """(Pod, Namespace) as generic resources; lightkube's registry takes each kind once."""
    from lightkube.generic_resource import create_global_resource, create_namespaced_resource

    return (
        create_namespaced_resource("", "v1", "Pod", "pods", verbs=["list", "watch", "global_list", "global_watch"]),
        create_global_resource("", "v1", "Namespace", "namespaces", verbs=["list", "watch"]),
    )


def pod_client(client_factory: Callable[[], Client], node_name: str) -> ResourceClient[ApiPod]:
    """The pods scheduled to `node_name` (fieldSelector=spec.nodeName=<node>)."""
    pods, _ = _generic_resources()
    return ResourceClient(
        f"pods on node {node_name}", pods, pod_record, client_factory, fields={"spec.nodeName": node_name}
    )


def namespace_client(client_factory: Callable[[], Client]) -> ResourceClient[ApiNamespace]:
    _, namespaces = _generic_resources()
    return ResourceClient("namespaces", namespaces, namespace_record, client_factory)

