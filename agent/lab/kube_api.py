"""The API stand-in's request handling, apart from HTTP and TLS (kube_server.py): routing,
authentication, list/get/patch/create/delete and the start of watches (request types,
negotiation and list options: kube_request.py).

Paths served (everything else is a 404 Status):
    /version /healthz /livez /readyz /api /api/v1 /apis /apis/events.k8s.io[/v1]
    /api/v1/{pods,namespaces,events}                       list, watch
    /api/v1/namespaces/{ns}/{pods,events}                   list, watch (events: create)
    /api/v1/namespaces/{ns}/pods/{name}                     get, patch
    /api/v1/namespaces/{name}                               get, patch
    /api/v1/namespaces/{ns}/events/{name}                   get, patch, delete
    /apis/events.k8s.io/v1/events, .../namespaces/{ns}/events[/{name}]   as core events
    /podbw-lab/compact (POST), /podbw-lab/close-watches (POST), /podbw-lab/requests (GET)
The last three are failure injection and counters for tests; no real server has them.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from agent.lab import kube_discovery as discovery
from agent.lab.kube_events import EventDecodeError, check_types, core_to_v1, unknown_fields, v1_to_core, validate_create, validate_update
from agent.lab.kube_objects import format_time, metadata_errors, string_map_error, without_api_owned
from agent.lab.kube_patch import APPLY_PATCH, PATCH_TYPES, PatchError, apply_patch
from agent.lab.kube_request import (
    JSON,
    ListOptions,
    Request,
    Response,
    WatchResponse,
    continue_token,
    error_response,
    json_response,
    negotiate,
    parse_continue,
    parse_list_options,
)
from agent.lab.kube_selectors import (
    CORE_EVENT_FIELDS,
    EVENTS_V1_FIELDS,
    NAMESPACE_FIELDS,
    POD_FIELDS,
    SelectorError,
    convert_field_selector,
    core_event_fields,
    field_selector_matches,
    label_selector_matches,
    namespace_fields,
    parse_field_selector,
    parse_label_selector,
    pod_fields,
)
from agent.lab.kube_status import (
    ApiError,
    FieldError,
    Resource,
    already_exists,
    bad_request,
    conflict,
    expired,
    internal_error,
    invalid,
    method_not_allowed,
    not_found,
    path_not_found,
    too_large_resource_version,
    unauthorized,
    unsupported_media_type,
)
from agent.lab.kube_store import KubeStore
from agent.lab.kube_tables import TABLES, table
from agent.lab.kube_watch import FUTURE_RV_WAIT_S, WatchOptions, WatchStream

log = logging.getLogger(__name__)

ADMIN_PREFIX = "podbw-lab"
_GENERATED_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


# ---- what each resource looks like through each API -------------------------------------------


@dataclass(frozen=True)
class View:
    resource: Resource
    store_name: str
    namespaced: bool
    fields: Mapping[str, str]
    field_values: Callable[[Mapping[str, Any]], dict[str, str]]
    list_kind: str
    render: Callable[[dict[str, Any]], dict[str, Any]] = lambda obj: obj
    writable: tuple[str, ...] = ("patch",)


POD_VIEW = View(discovery.PODS, "pods", True, POD_FIELDS, pod_fields, "PodList")
NAMESPACE_VIEW = View(discovery.NAMESPACES, "namespaces", False, NAMESPACE_FIELDS, namespace_fields, "NamespaceList")
CORE_EVENT_VIEW = View(discovery.CORE_EVENTS, "events", True, CORE_EVENT_FIELDS, core_event_fields, "EventList",
                       writable=("patch", "create", "delete"))
V1_EVENT_VIEW = View(discovery.EVENTS_V1, "events", True, EVENTS_V1_FIELDS, core_event_fields, "EventList",
                     render=core_to_v1, writable=("patch", "create", "delete"))
CORE_VIEWS = {"pods": POD_VIEW, "namespaces": NAMESPACE_VIEW, "events": CORE_EVENT_VIEW}


# ---- the API ----------------------------------------------------------------------------------


class KubeApi:
    def __init__(
        self,
        store: KubeStore,
        token: str,
        bookmark_interval_s: float = 5.0,
        min_request_timeout_s: float = 300.0,
        server_address: str = "127.0.0.1:6443",
    ) -> None:
        self.store = store
        self.token = token
        self.bookmark_interval_s = bookmark_interval_s
        self.min_request_timeout_s = min_request_timeout_s
        self.server_address = server_address
        self.requests: Counter[str] = Counter()
        self._requests_lock = threading.Lock()

    def count(self, what: str) -> None:
        with self._requests_lock:
            self.requests[what] += 1

    def handle(self, req: Request) -> Response | WatchResponse:
        try:
            if not self._authorized(req):
                raise unauthorized()
            return self._route(req)
        except ApiError as e:
            self.count(f"error {e.code}")
            log.debug("%s %s: %s", req.method, req.path, e)
            return error_response(e)
        except Exception as e:  # a bug must answer 500, never end the server
            self.count("error 500")
            log.exception("%s %s failed", req.method, req.path)
            return error_response(internal_error(repr(e)))

    def _authorized(self, req: Request) -> bool:
        scheme, _, credential = req.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(), self.token.encode())

    # ---- routing --------------------------------------------------------------------------

    def _route(self, req: Request) -> Response | WatchResponse:
        parts = [p for p in req.path.split("/") if p]
        if parts[:1] == [ADMIN_PREFIX]:
            return self._admin(req, parts[1:])
        if parts[:2] == ["api", "v1"] and len(parts) > 2:
            return self._resource(req, parts[2:], CORE_VIEWS)
        if parts[:3] == ["apis", "events.k8s.io", "v1"] and len(parts) > 3:
            return self._resource(req, parts[3:], {"events": V1_EVENT_VIEW})
        documents: dict[tuple[str, ...], Callable[[], Response]] = {
            ("version",): lambda: json_response(200, discovery.SERVER_VERSION),
            ("healthz",): lambda: Response(200, b"ok", "text/plain; charset=utf-8"),
            ("livez",): lambda: Response(200, b"ok", "text/plain; charset=utf-8"),
            ("readyz",): lambda: Response(200, b"ok", "text/plain; charset=utf-8"),
            ("api",): lambda: self._discovery(req, discovery.aggregated_core, lambda: discovery.api_versions(self.server_address)),
            ("api", "v1"): lambda: json_response(200, discovery.core_resource_list()),
            ("apis",): lambda: self._discovery(req, discovery.aggregated_groups, discovery.api_group_list),
            ("apis", "events.k8s.io"): lambda: json_response(200, discovery.events_group()),
            ("apis", "events.k8s.io", "v1"): lambda: json_response(200, discovery.events_resource_list()),
        }
        document = documents.get(tuple(parts))
        if document is None:
            raise path_not_found()
        if req.method not in ("GET", "HEAD"):
            raise method_not_allowed(req.method)
        self.count(f"get /{'/'.join(parts)}")
        return document()

    def _discovery(self, req: Request, aggregated: Callable[[], dict[str, Any]], legacy: Callable[[], dict[str, Any]]) -> Response:
        if negotiate(req.headers.get("Accept", ""), aggregated_ok=True).aggregated:
            return json_response(200, aggregated(), content_type=discovery.AGGREGATED_V2)
        return json_response(200, legacy())

    def _resource(self, req: Request, parts: list[str], views: Mapping[str, View]) -> Response | WatchResponse:
        method = req.method
        if len(parts) == 1 and parts[0] in views:
            view = views[parts[0]]
            if method == "GET":
                return self._list_or_watch(req, view, None)
            raise method_not_allowed(method, view.resource)
        if parts[0] == "namespaces" and "namespaces" in views and len(parts) == 2:
            return self._object(req, NAMESPACE_VIEW, "", parts[1])
        if parts[0] == "namespaces" and len(parts) in (3, 4) and parts[2] in views and views[parts[2]].namespaced:
            view, namespace = views[parts[2]], parts[1]
            if len(parts) == 4:
                return self._object(req, view, namespace, parts[3])
            if method == "GET":
                return self._list_or_watch(req, view, namespace)
            if method == "POST" and "create" in view.writable:
                return self._create(req, view, namespace)
            raise method_not_allowed(method, view.resource)
        raise path_not_found()

    def _object(self, req: Request, view: View, namespace: str, name: str) -> Response:
        if req.method == "GET":
            return self._get(req, view, namespace, name)
        if req.method == "PATCH":
            return self._patch(req, view, namespace, name)
        if req.method == "DELETE" and "delete" in view.writable:
            return self._delete(req, view, namespace, name)
        raise method_not_allowed(req.method, view.resource)

    # ---- reads ----------------------------------------------------------------------------

    def _matcher(self, view: View, namespace: str | None, options: ListOptions) -> Callable[[dict[str, Any]], bool]:
        try:
            fields = convert_field_selector(parse_field_selector(options.field_selector), view.fields)
            labels = parse_label_selector(options.label_selector)
        except SelectorError as e:
            raise bad_request(str(e)) from None

        def matches(obj: dict[str, Any]) -> bool:
            meta = obj.get("metadata", {})
            if namespace is not None and meta.get("namespace", "") != namespace:
                return False
            return field_selector_matches(fields, view.field_values(obj)) and label_selector_matches(labels, meta.get("labels") or {})

        return matches

    def _list_or_watch(self, req: Request, view: View, namespace: str | None) -> Response | WatchResponse:
        options = parse_list_options(req)
        matches = self._matcher(view, namespace, options)
        if options.watch:
            self.count(f"watch {view.resource.qualified}")
            stream = WatchStream(
                self.store, view.store_name, matches, view.render, (view.resource.api_version, view.resource.kind),
                WatchOptions(options.resource_version, options.allow_bookmarks, options.timeout_s, options.send_initial_events),
                self.bookmark_interval_s, self.min_request_timeout_s,
            )
            return WatchResponse(stream, f"watch {view.resource.qualified} from {options.resource_version or 'now'}")
        self.count(f"list {view.resource.qualified}")
        negotiated = negotiate(req.headers.get("Accept", ""), table_ok=view.store_name in TABLES)
        objects, rv = self._snapshot(view, namespace, options)
        selected = [obj for obj in objects if matches(obj)]
        start_key = ""
        if options.continue_token:
            rv, start_key = parse_continue(options.continue_token)
        selected = [obj for obj in selected if _sort_key(obj) > start_key] if start_key else selected
        list_meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if options.limit and len(selected) > options.limit:
            remaining = len(selected) - options.limit
            selected = selected[: options.limit]
            list_meta["continue"] = continue_token(rv, _sort_key(selected[-1]))
            list_meta["remainingItemCount"] = remaining
        if negotiated.table_version:
            doc = table(view.store_name, selected, list_meta, options.include_object, time.time(), negotiated.table_version)
            return json_response(200, doc, content_type=f"{JSON};as=Table;v={negotiated.table_version.split('/')[1]};g=meta.k8s.io")
        items = [_without_type(view.render(obj)) for obj in selected]
        return json_response(200, {"kind": view.list_kind, "apiVersion": view.resource.api_version, "metadata": list_meta, "items": items})

    def _snapshot(self, view: View, namespace: str | None, options: ListOptions) -> tuple[list[dict[str, Any]], int]:
        if options.continue_token:
            rv, _ = parse_continue(options.continue_token)
            try:
                return self.store.list_at(view.store_name, namespace, rv), rv
            except ApiError as e:
                if e.code == 410:
                    raise expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start "
                        "a new list without the continue parameter, or use the continue token in this response to "
                        "retrieve the remainder of the results."
                    ) from None
                raise
        if options.resource_version not in ("", "0"):
            wanted = int(options.resource_version)
            self._wait_for_rv(wanted)
            if options.resource_version_match == "Exact":
                return self.store.list_at(view.store_name, namespace, wanted), wanted
        return self.store.list(view.store_name, namespace)

    def _wait_for_rv(self, wanted: int) -> None:
        deadline = time.monotonic() + FUTURE_RV_WAIT_S
        while self.store.rv < wanted:
            if time.monotonic() >= deadline:
                raise too_large_resource_version(wanted, self.store.rv)
            self.store.wait(self.store.rv, self.store.close_generation, 0.1)

    def _get(self, req: Request, view: View, namespace: str, name: str) -> Response:
        self.count(f"get {view.resource.qualified}")
        obj = self.store.get(view.store_name, namespace, name)
        if obj is None:
            raise not_found(view.resource, name)
        negotiated = negotiate(req.headers.get("Accept", ""), table_ok=view.store_name in TABLES)
        if negotiated.table_version:
            include = req.param("includeObject") or "Metadata"
            doc = table(view.store_name, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}, include, time.time(),
                        negotiated.table_version)
            return json_response(200, doc, content_type=f"{JSON};as=Table;v={negotiated.table_version.split('/')[1]};g=meta.k8s.io")
        return json_response(200, view.render(obj))

    # ---- writes ---------------------------------------------------------------------------

    def _body(self, req: Request) -> Any:
        try:
            return json.loads(req.body or b"null")
        except ValueError as e:
            raise bad_request(f"error decoding patch or body: {e}") from None

    def _patch(self, req: Request, view: View, namespace: str, name: str) -> Response:
        self.count(f"patch {view.resource.qualified}")
        content_type = req.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type == APPLY_PATCH:
            raise unsupported_media_type(content_type, PATCH_TYPES + [" (server-side apply is not in the lab's stand-in)"])
        if content_type not in PATCH_TYPES:
            raise unsupported_media_type(content_type, PATCH_TYPES)
        patch = self._body(req)
        dry_run = "All" in req.query.get("dryRun", [])
        with self.store.locked():
            current = self.store.get(view.store_name, namespace, name)
            if current is None:
                raise not_found(view.resource, name)
            try:
                patched = apply_patch(content_type, view.render(current), patch)
            except PatchError as e:
                if e.unprocessable:
                    raise ApiError(422, "Invalid", str(e)) from None
                raise bad_request(str(e)) from None
            if not isinstance(patched, dict):
                raise bad_request("the patch must leave an object")
            wanted_rv = (patched.get("metadata") or {}).get("resourceVersion") if isinstance(patched.get("metadata"), dict) else None
            if wanted_rv not in (None, "") and wanted_rv != current["metadata"]["resourceVersion"]:
                raise conflict(view.resource, name)
            decode_error = string_map_error(patched, view.resource.kind)
            if decode_error:
                raise bad_request(decode_error)
            new = self._to_stored(view, patched)
            new = {**new, "kind": current["kind"], "apiVersion": current["apiVersion"]}
            errors = _metadata_update_errors(new, current) + metadata_errors(new)
            if view.store_name == "events":
                errors += validate_update(new, current, strict=view is V1_EVENT_VIEW)
            elif without_api_owned(_normalized(new)) != without_api_owned(current):
                errors.append(FieldError("spec", "Forbidden",
                                         "the lab's API stand-in lets a client change metadata.labels and metadata.annotations only"))
            if errors:
                raise invalid(view.resource, name, errors)
            stored = current if dry_run else self.store.update(view.store_name, _normalized(new))
        return json_response(200, view.render(stored))

    def _to_stored(self, view: View, served: dict[str, Any]) -> dict[str, Any]:
        if view is V1_EVENT_VIEW:
            try:
                check_types(served, v1=True)
            except EventDecodeError as e:
                raise bad_request(f'Event in version "v1" cannot be handled as a Event: {e}') from None
            return v1_to_core(served)
        if view.store_name == "events":
            try:
                check_types(served, v1=False)
            except EventDecodeError as e:
                raise bad_request(f'Event in version "v1" cannot be handled as a Event: {e}') from None
        return served

    def _create(self, req: Request, view: View, namespace: str) -> Response:
        self.count(f"create {view.resource.qualified}")
        body = self._body(req)
        if not isinstance(body, dict):
            raise bad_request(f"the body must be a {view.resource.kind} object")
        strict = view is V1_EVENT_VIEW
        for key, expected in (("apiVersion", view.resource.api_version), ("kind", view.resource.kind)):
            if body.get(key) not in (None, "", expected):
                raise bad_request(f"the {key} in the data ({body[key]}) does not match the expected {key} ({expected})")
        unknown = unknown_fields(body, v1=strict)
        warnings = [f'299 - "unknown field \\"{name}\\""' for name in unknown]
        if unknown and req.param("fieldValidation") == "Strict":
            raise bad_request("strict decoding error: " + ", ".join(f'unknown field "{name}"' for name in unknown))
        body = {k: v for k, v in body.items() if k not in unknown}
        decode_error = string_map_error(body, view.resource.kind)
        if decode_error:
            raise bad_request(decode_error)
        event = self._to_stored(view, body)
        metadata = dict(event.get("metadata") or {})
        if metadata.get("namespace", "") not in ("", namespace):
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if metadata.get("resourceVersion"):
            raise internal_error("resourceVersion should not be set on objects to be created")
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + "".join(secrets.choice(_GENERATED_NAME_CHARS) for _ in range(5))
        metadata.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=format_time(time.time()))
        event = _normalized({**event, "kind": "Event", "apiVersion": "v1", "metadata": metadata})
        errors = validate_create(event, strict=strict) + metadata_errors(event)
        if errors:
            raise invalid(view.resource, metadata.get("name", ""), errors)
        with self.store.locked():
            if self.store.get("namespaces", "", namespace) is None:
                raise not_found(discovery.NAMESPACES, namespace)
            if "All" in req.query.get("dryRun", []):
                stored = event
            else:
                try:
                    stored = self.store.create(view.store_name, event)
                except KeyError:
                    raise already_exists(view.resource, metadata["name"]) from None
        headers = {"Warning": ", ".join(warnings)} if warnings else None
        return json_response(201, view.render(stored), headers=headers)

    def _delete(self, req: Request, view: View, namespace: str, name: str) -> Response:
        self.count(f"delete {view.resource.qualified}")
        with self.store.locked():
            current = self.store.get(view.store_name, namespace, name)
            if current is None:
                raise not_found(view.resource, name)
            if "All" not in req.query.get("dryRun", []):
                self.store.delete(view.store_name, namespace, name)
        details: dict[str, Any] = {"name": name}
        if view.resource.group:
            details["group"] = view.resource.group
        details.update(kind=view.resource.name, uid=current["metadata"].get("uid", ""))
        return json_response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})

    # ---- failure injection and counters ---------------------------------------------------

    def _admin(self, req: Request, parts: list[str]) -> Response:
        if parts == ["compact"] and req.method == "POST":
            rv = self.store.compact()
            log.info("compacted: every resourceVersion before %d is now too old", rv)
            return json_response(200, {"resourceVersion": str(rv)})
        if parts == ["close-watches"] and req.method == "POST":
            self.store.close_watches()
            log.info("closing every open watch")
            return json_response(200, {})
        if parts == ["requests"] and req.method == "GET":
            with self._requests_lock:
                return json_response(200, dict(self.requests))
        raise path_not_found()


def _sort_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _without_type(obj: dict[str, Any]) -> dict[str, Any]:
    """List items carry no kind/apiVersion in the apiserver's JSON (the list names them)."""
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def _normalized(obj: dict[str, Any]) -> dict[str, Any]:
    """Empty label and annotation maps are omitted, as Go's `omitempty` serializes them."""
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if not (k in ("labels", "annotations") and not v)}
    return {**obj, "metadata": metadata}


def _metadata_update_errors(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    errors = []
    new_meta, old_meta = new.get("metadata") or {}, old.get("metadata") or {}
    for key in ("name", "namespace", "uid", "creationTimestamp"):
        if new_meta.get(key, "") != old_meta.get(key, ""):
            errors.append(FieldError(f"metadata.{key}", "Invalid", "field is immutable", new_meta.get(key, "")))
    return errors
