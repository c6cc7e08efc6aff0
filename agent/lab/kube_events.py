"""Events, stored once in their core/v1 form and served through both APIs, as the apiserver does:
events.k8s.io/v1 objects convert field by field (pkg/apis/events/v1/conversion.go):

    regarding -> involvedObject        note -> message
    reportingController -> reportingComponent (its JSON name in core/v1)
    deprecatedSource -> source         deprecatedCount -> count
    deprecatedFirstTimestamp -> firstTimestamp, deprecatedLastTimestamp -> lastTimestamp
    eventTime, series {count, lastObservedTime}, action, reason, type, related, reportingInstance: same

(`series.count` stays `series.count`: core's `count` is the deprecated counter.) Validation
follows pkg/apis/core/validation/events.go: strict for writes through events.k8s.io, the
legacy rules for writes through core/v1.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

from agent.lab.kube_names import dns1123_subdomain_errors, qualified_name_errors
from agent.lab.kube_objects import parse_micro_time, parse_time
from agent.lab.kube_status import FieldError

REPORTING_INSTANCE_MAX = 128
ACTION_MAX = 128
REASON_MAX = 128
NOTE_MAX = 1024

# Top-level fields of each form; a field outside these is dropped with a warning (or refused
# when the request asks for fieldValidation=Strict).
CORE_FIELDS = {
    "kind", "apiVersion", "metadata", "involvedObject", "reason", "message", "source", "firstTimestamp",
    "lastTimestamp", "count", "type", "eventTime", "series", "action", "related", "reportingComponent",
    "reportingInstance",
}
V1_FIELDS = {
    "kind", "apiVersion", "metadata", "eventTime", "series", "reportingController", "reportingInstance", "action",
    "reason", "regarding", "related", "note", "type", "deprecatedSource", "deprecatedFirstTimestamp",
    "deprecatedLastTimestamp", "deprecatedCount",
}


class EventDecodeError(ValueError):
    """The body is not an Event (wrong JSON types or time formats): a 400."""


def v1_to_core(event: Mapping[str, Any]) -> dict[str, Any]:
    core: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": copy.deepcopy(event.get("metadata") or {}),
        "involvedObject": copy.deepcopy(event.get("regarding") or {}),
    }
    _put(core, "reason", event.get("reason"))
    _put(core, "message", event.get("note"))
    core["source"] = copy.deepcopy(event.get("deprecatedSource") or {})
    core["firstTimestamp"] = event.get("deprecatedFirstTimestamp")
    core["lastTimestamp"] = event.get("deprecatedLastTimestamp")
    _put(core, "count", event.get("deprecatedCount"))
    _put(core, "type", event.get("type"))
    core["eventTime"] = event.get("eventTime")
    _put(core, "series", copy.deepcopy(event.get("series")))
    _put(core, "action", event.get("action"))
    _put(core, "related", copy.deepcopy(event.get("related")))
    core["reportingComponent"] = event.get("reportingController") or ""
    core["reportingInstance"] = event.get("reportingInstance") or ""
    return core


def core_to_v1(event: Mapping[str, Any]) -> dict[str, Any]:
    v1: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "events.k8s.io/v1",
        "metadata": copy.deepcopy(event.get("metadata") or {}),
        "eventTime": event.get("eventTime"),
    }
    _put(v1, "series", copy.deepcopy(event.get("series")))
    _put(v1, "reportingController", event.get("reportingComponent"))
    _put(v1, "reportingInstance", event.get("reportingInstance"))
    _put(v1, "action", event.get("action"))
    _put(v1, "reason", event.get("reason"))
    v1["regarding"] = copy.deepcopy(event.get("involvedObject") or {})
    _put(v1, "related", copy.deepcopy(event.get("related")))
    _put(v1, "note", event.get("message"))
    _put(v1, "type", event.get("type"))
    v1["deprecatedSource"] = copy.deepcopy(event.get("source") or {})
    v1["deprecatedFirstTimestamp"] = event.get("firstTimestamp")
    v1["deprecatedLastTimestamp"] = event.get("lastTimestamp")
    _put(v1, "deprecatedCount", event.get("count"))
    return v1


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    """Set key unless value is empty: these fields are `omitempty` in the Go types."""
    if value not in (None, "", 0, {}):
        target[key] = value


def unknown_fields(event: Mapping[str, Any], v1: bool) -> list[str]:
    allowed = V1_FIELDS if v1 else CORE_FIELDS
    return sorted(k for k in event if k not in allowed)


def check_types(event: Mapping[str, Any], v1: bool) -> None:
    """Raise EventDecodeError as Go's decoder would for a body of the wrong shape."""
    strings = ("reason", "type", "action", "reportingInstance") + (
        ("note", "reportingController") if v1 else ("message", "reportingComponent"))
    for key in strings:
        if key in event and event[key] is not None and not isinstance(event[key], str):
            raise EventDecodeError(f"json: cannot unmarshal {type(event[key]).__name__} into Go struct field Event.{key} of type string")
    for key in ("regarding", "related", "deprecatedSource") if v1 else ("involvedObject", "related", "source"):
        value = event.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise EventDecodeError(f"json: cannot unmarshal {type(value).__name__} into Go struct field Event.{key} of type object")
        for field, field_value in value.items():
            if not isinstance(field_value, str):
                raise EventDecodeError(f"json: cannot unmarshal {type(field_value).__name__} into Go struct field Event.{key}.{field} of type string")
    count_key = "deprecatedCount" if v1 else "count"
    if event.get(count_key) is not None and (isinstance(event[count_key], bool) or not isinstance(event[count_key], int)):
        raise EventDecodeError(f"json: cannot unmarshal into Go struct field Event.{count_key} of type int32")
    _check_time(event, "eventTime", micro=True)
    for key in ("deprecatedFirstTimestamp", "deprecatedLastTimestamp") if v1 else ("firstTimestamp", "lastTimestamp"):
        _check_time(event, key, micro=False)
    series = event.get("series")
    if series is not None:
        if not isinstance(series, dict):
            raise EventDecodeError("json: cannot unmarshal into Go struct field Event.series of type EventSeries")
        if series.get("count") is not None and (isinstance(series["count"], bool) or not isinstance(series["count"], int)):
            raise EventDecodeError("json: cannot unmarshal into Go struct field EventSeries.series.count of type int32")
        _check_time(series, "lastObservedTime", micro=True)
    if not isinstance(event.get("metadata", {}), dict):
        raise EventDecodeError("json: cannot unmarshal into Go struct field Event.metadata of type v1.ObjectMeta")


def _check_time(obj: Mapping[str, Any], key: str, micro: bool) -> None:
    value = obj.get(key)
    if value is None:
        return
    if not isinstance(value, str):
        raise EventDecodeError(f"{key}: a time must be a string, not {type(value).__name__}")
    try:
        (parse_micro_time if micro else parse_time)(value)
    except ValueError as e:
        raise EventDecodeError(str(e)) from None


def validate_create(event: Mapping[str, Any], strict: bool) -> list[FieldError]:
    """event is in core form; strict for a create through events.k8s.io/v1."""
    errors = _name_errors(event) + _legacy_errors(event)
    if not strict:
        return errors
    errors += _series_errors(event)
    if not event.get("eventTime"):
        errors.append(FieldError("eventTime", "Required"))
    if event.get("type") not in ("Normal", "Warning"):
        errors.append(FieldError("type", "Invalid", f"has invalid value: {event.get('type', '')}", ""))
    for key, path in (("firstTimestamp", "firstTimestamp"), ("lastTimestamp", "lastTimestamp")):
        if event.get(key):
            errors.append(FieldError(path, "Invalid", "needs to be unset", ""))
    if event.get("count"):
        errors.append(FieldError("count", "Invalid", "needs to be unset", ""))
    source = event.get("source") or {}
    if source.get("component") or source.get("host"):
        errors.append(FieldError("source", "Invalid", "needs to be unset", ""))
    return errors


def validate_update(new: Mapping[str, Any], old: Mapping[str, Any], strict: bool) -> list[FieldError]:
    """Both in core form; through events.k8s.io only the series (and metadata) may change."""
    errors = _legacy_errors(new)
    if not strict:
        return errors
    if new.get("series") != old.get("series"):
        errors += _series_errors(new)
    for key, path in (
        ("involvedObject", "involvedObject"), ("reason", "reason"), ("message", "message"), ("source", "source"),
        ("firstTimestamp", "firstTimestamp"), ("lastTimestamp", "lastTimestamp"), ("count", "count"),
        ("type", "type"), ("eventTime", "eventTime"), ("action", "action"), ("related", "related"),
        ("reportingComponent", "reportingController"), ("reportingInstance", "reportingInstance"),
    ):
        if _normal(new.get(key)) != _normal(old.get(key)):
            errors.append(FieldError(path, "Invalid", "field is immutable", new.get(key)))
    return errors


def _normal(value: Any) -> Any:
    return None if value in (None, "", 0, {}) else value


def _name_errors(event: Mapping[str, Any]) -> list[FieldError]:
    name = (event.get("metadata") or {}).get("name", "")
    if not name:
        return [FieldError("metadata.name", "Required", "name or generateName is required")]
    return [FieldError("metadata.name", "Invalid", msg, name) for msg in dns1123_subdomain_errors(name)]


def _series_errors(event: Mapping[str, Any]) -> list[FieldError]:
    series = event.get("series")
    if series is None:
        return []
    errors = []
    if (series.get("count") or 0) < 2:
        errors.append(FieldError("series.count", "Invalid", "should be at least 2", ""))
    if not series.get("lastObservedTime"):
        errors.append(FieldError("series.lastObservedTime", "Required"))
    return errors


def _legacy_errors(event: Mapping[str, Any]) -> list[FieldError]:
    errors = []
    namespace = (event.get("metadata") or {}).get("namespace", "")
    involved = event.get("involvedObject") or {}
    involved_ns = involved.get("namespace", "")
    if not event.get("eventTime"):
        if not involved_ns:
            if namespace not in ("", "default"):
                errors.append(FieldError("involvedObject.namespace", "Invalid", "does not match event.namespace", involved_ns))
        elif namespace != involved_ns:
            errors.append(FieldError("involvedObject.namespace", "Invalid", "does not match event.namespace", involved_ns))
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            errors.append(FieldError("involvedObject.namespace", "Invalid", "does not match event.namespace", involved_ns))
        controller = event.get("reportingComponent", "")
        if not controller:
            errors.append(FieldError("reportingController", "Required"))
        errors += [FieldError("reportingController", "Invalid", msg, controller) for msg in qualified_name_errors(controller)] if controller else []
        for key, path, limit in (("reportingInstance", "reportingInstance", REPORTING_INSTANCE_MAX),
                                 ("action", "action", ACTION_MAX), ("reason", "reason", REASON_MAX)):
            value = event.get(key, "")
            if not value:
                errors.append(FieldError(path, "Required"))
            if len(value) > limit:
                errors.append(FieldError(path, "Invalid", f"can have at most {limit} characters", ""))
        if len(event.get("message", "")) > NOTE_MAX:
            errors.append(FieldError("message", "Invalid", f"can have at most {NOTE_MAX} characters", ""))
    errors += [FieldError("namespace", "Invalid", msg, namespace) for msg in dns1123_subdomain_errors(namespace)]
    return errors
