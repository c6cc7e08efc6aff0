"""What a request to the API stand-in is and what it answers, apart from any resource: the
request and response types, content negotiation (JSON only; a Table or the aggregated
discovery document when the Accept header asks), list and watch options as the apiserver
validates them (meta/internalversion/validation), and continue tokens."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from agent.lab.kube_status import ApiError, FieldError, Resource, bad_request, invalid, not_acceptable
from agent.lab.kube_watch import WatchStream

JSON = "application/json"
LIST_OPTIONS = Resource("meta.k8s.io", "v1", "listoptions", "ListOptions")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes = b""

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class WatchResponse:
    """A 200 whose chunked body the HTTP layer streams from stream.run()."""

    stream: WatchStream
    description: str


def json_response(status: int, obj: Any, content_type: str = JSON, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode(), content_type, headers or {})


def error_response(error: ApiError) -> Response:
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s else {}
    return json_response(error.code, error.status(), headers=headers)


@dataclass(frozen=True)
class Negotiated:
    table_version: str | None = None
    """meta.k8s.io/v1 or /v1beta1 when the client asked for a Table."""
    aggregated: bool = False


def negotiate(accept: str, table_ok: bool = False, aggregated_ok: bool = False) -> Negotiated:
    """The first media type in Accept this stand-in can produce (JSON only; no protobuf)."""
    if not accept.strip():
        return Negotiated()
    offered = []
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        offered.append((parts[0].lower(), params))
    for media, params in offered:
        if media not in ("application/json", "application/*", "*/*"):
            continue
        kind, group, version = params.get("as"), params.get("g"), params.get("v")
        if kind is None:
            return Negotiated()
        if table_ok and kind == "Table" and group == "meta.k8s.io" and version in ("v1", "v1beta1"):
            return Negotiated(table_version=f"meta.k8s.io/{version}")
        if aggregated_ok and kind == "APIGroupDiscoveryList" and group == "apidiscovery.k8s.io" and version == "v2":
            return Negotiated(aggregated=True)
    raise not_acceptable([JSON])


def parse_bool(text: str, name: str) -> bool:
    """As Go's strconv.ParseBool, which the apiserver's query decoding uses."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise bad_request(f'strconv.ParseBool: parsing "{text}": invalid syntax for {name}')


def parse_int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise bad_request(f'strconv.ParseInt: parsing "{text}": invalid syntax for {name}') from None


@dataclass(frozen=True)
class ListOptions:
    watch: bool = False
    resource_version: str = ""
    resource_version_match: str = ""
    timeout_s: float | None = None
    allow_bookmarks: bool = False
    send_initial_events: bool | None = None
    limit: int = 0
    continue_token: str = ""
    field_selector: str = ""
    label_selector: str = ""
    include_object: str = "Metadata"


def parse_list_options(req: Request) -> ListOptions:
    def get(name: str) -> str:
        return req.param(name) or ""

    watch = parse_bool(get("watch"), "watch") if get("watch") else False
    rv = get("resourceVersion")
    if rv and not rv.isdigit():
        raise bad_request(f'invalid resource version "{rv}": must be a decimal number')
    options = ListOptions(
        watch=watch,
        resource_version=rv,
        resource_version_match=get("resourceVersionMatch"),
        timeout_s=float(parse_int(get("timeoutSeconds"), "timeoutSeconds")) if get("timeoutSeconds") else None,
        allow_bookmarks=parse_bool(get("allowWatchBookmarks"), "allowWatchBookmarks") if get("allowWatchBookmarks") else False,
        send_initial_events=parse_bool(get("sendInitialEvents"), "sendInitialEvents") if get("sendInitialEvents") else None,
        limit=parse_int(get("limit"), "limit") if get("limit") else 0,
        continue_token=get("continue"),
        field_selector=get("fieldSelector"),
        label_selector=get("labelSelector"),
        include_object=get("includeObject") or "Metadata",
    )
    errors = _list_option_errors(options)
    if errors:
        raise invalid(LIST_OPTIONS, "", errors)
    return options


def _list_option_errors(o: ListOptions) -> list[FieldError]:
    """meta/internalversion/validation.ValidateListOptions."""
    errors = []
    match = o.resource_version_match
    if match and match not in ("NotOlderThan", "Exact"):
        errors.append(FieldError("resourceVersionMatch", "NotSupported", 'supported values: "Exact", "NotOlderThan", ""', match))
    if o.watch:
        if o.send_initial_events is not None:
            if match != "NotOlderThan":
                errors.append(FieldError("sendInitialEvents", "Forbidden",
                                         "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan"))
            if not o.allow_bookmarks:
                errors.append(FieldError("allowWatchBookmarks", "Forbidden", "sendInitialEvents requires setting allowWatchBookmarks to true"))
        elif match:
            errors.append(FieldError("resourceVersionMatch", "Forbidden", "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"))
    else:
        if o.send_initial_events is not None:
            errors.append(FieldError("sendInitialEvents", "Forbidden", "sendInitialEvents is forbidden for list"))
        if match and not o.resource_version:
            errors.append(FieldError("resourceVersionMatch", "Forbidden", "resourceVersionMatch is forbidden unless resourceVersion is provided"))
        if match == "Exact" and o.resource_version == "0":
            errors.append(FieldError("resourceVersionMatch", "Forbidden", 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'))
        if o.continue_token and o.resource_version not in ("", "0"):
            errors.append(FieldError("resourceVersion", "Forbidden", "specifying resource version is not allowed when using continue"))
    if o.limit < 0:
        errors.append(FieldError("limit", "Invalid", "must be greater than or equal to 0", o.limit))
    if o.include_object not in ("None", "Metadata", "Object"):
        errors.append(FieldError("includeObject", "NotSupported", "supported values: None, Metadata, Object", o.include_object))
    return errors


def continue_token(rv: int, start_key: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start_key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_continue(token: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)") from None
