"""Field and label selectors as apimachinery parses and matches them (`pkg/fields`,
`pkg/labels`), and the fields each resource lets a client select on.

Field selectors: `a=b,c!=d` (`==` is `=`); `\\`, `,` and `=` in values are escaped with `\\`.
A field the resource does not offer is refused ("field label not supported: x", a 400).
Label selectors: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a)`, `k`, `!k`, `k>1`, `k<1`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from agent.lab.kube_names import label_value_errors, qualified_name_errors


class SelectorError(ValueError):
    """A selector that cannot be parsed or names a field the resource does not offer (400)."""


# ---- field selectors --------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    op: str
    """`=` or `!=`."""
    value: str


def parse_field_selector(text: str) -> list[FieldRequirement]:
    requirements = []
    for term in _split_unescaped(text, ","):
        if term == "":
            continue
        field, op, value = _split_field_term(term)
        requirements.append(FieldRequirement(field, "!=" if op == "!=" else "=", _unescape_field_value(value)))
    return requirements


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _split_field_term(term: str) -> tuple[str, str, str]:
    escaped = False
    for i, char in enumerate(term):
        if escaped:
            escaped = False
            continue
        if char == "\\":
            escaped = True
            continue
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    raise SelectorError(f"invalid selector: '{term}'; can't understand '{term}'")


def _unescape_field_value(value: str) -> str:
    out, escaped = [], False
    for char in value:
        if escaped:
            if char not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{char}")
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            raise SelectorError(f"invalid field selector: unescaped {char!r} in value {value!r}")
        else:
            out.append(char)
    if escaped:
        raise SelectorError("invalid field selector: unterminated escape sequence")
    return "".join(out)


def convert_field_selector(requirements: list[FieldRequirement], supported: Mapping[str, str]) -> list[FieldRequirement]:
    """Each field renamed through supported (requested name -> field name); unknown ones refused."""
    converted = []
    for req in requirements:
        if req.field not in supported:
            raise SelectorError(f"field label not supported: {req.field}")
        converted.append(FieldRequirement(supported[req.field], req.op, req.value))
    return converted


def field_selector_matches(requirements: list[FieldRequirement], fields: Mapping[str, str]) -> bool:
    for req in requirements:
        equal = fields.get(req.field, "") == req.value
        if equal != (req.op == "="):
            return False
    return True


# ---- label selectors --------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelRequirement:
    key: str
    op: str
    """one of =, !=, in, notin, exists, !, gt, lt"""
    values: tuple[str, ...] = ()


_TOKEN_RE = re.compile(r"\s*(==|!=|=|!|\(|\)|,|>|<|[^\s,()=!<>]+)")


def _tokens(text: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise SelectorError(f"unable to parse requirement: unexpected character at {pos} in {text!r}")
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


def parse_label_selector(text: str) -> list[LabelRequirement]:
    tokens = _tokens(text)
    requirements: list[LabelRequirement] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise SelectorError(f"unable to parse requirement: unexpected end of selector {text!r}")
        i += 1
        return tokens[i - 1]

    def peek() -> str | None:
        return tokens[i] if i < len(tokens) else None

    while i < len(tokens):
        token = take()
        if token == "!":
            key = _key(take())
            requirements.append(LabelRequirement(key, "!"))
        else:
            key = _key(token)
            op = peek()
            if op in (None, ","):
                requirements.append(LabelRequirement(key, "exists"))
            elif op in ("=", "==", "!="):
                take()
                value = "" if peek() in (None, ",") else take()
                requirements.append(LabelRequirement(key, "!=" if op == "!=" else "=", (_value(value),)))
            elif op in ("in", "notin"):
                take()
                requirements.append(LabelRequirement(key, op, _value_set(take, peek)))
            elif op in (">", "<"):
                take()
                number = take()
                if not re.fullmatch(r"-?\d+", number):
                    raise SelectorError(f"unable to parse requirement: for 'gt', 'lt' operators, the value must be an integer: {number!r}")
                requirements.append(LabelRequirement(key, "gt" if op == ">" else "lt", (number,)))
            else:
                raise SelectorError(f"unable to parse requirement: found '{op}', expected: in, notin, =, ==, !=, gt, lt")
        following = peek()
        if following is None:
            break
        if following != ",":
            raise SelectorError(f"unable to parse requirement: found '{following}', expected: ','")
        take()
        if peek() is None:
            raise SelectorError(f"unable to parse requirement: found '', expected: identifier after ','")
    return requirements


def _value_set(take: Callable[[], str], peek: Callable[[], str | None]) -> tuple[str, ...]:
    if take() != "(":
        raise SelectorError("unable to parse requirement: found '', expected: '('")
    values: list[str] = []
    expect_value = True
    while True:
        token = take()
        if token == ")":
            if expect_value:
                values.append("")  # `k in ()` and `k in (a,)` hold the empty value, as apimachinery parses them
            break
        if token == ",":
            if expect_value:
                values.append("")
            expect_value = True
            continue
        if not expect_value:
            raise SelectorError(f"unable to parse requirement: found '{token}', expected: ',' or ')'")
        values.append(_value(token))
        expect_value = False
    return tuple(values)


def _key(token: str) -> str:
    if token in ("(", ")", ",", "=", "==", "!=", "!", ">", "<", "in", "notin"):
        raise SelectorError(f"unable to parse requirement: found '{token}', expected: identifier")
    errors = qualified_name_errors(token)
    if errors:
        raise SelectorError(f"unable to parse requirement: key: Invalid value: \"{token}\": {'; '.join(errors)}")
    return token


def _value(token: str) -> str:
    errors = label_value_errors(token)
    if errors:
        raise SelectorError(f"unable to parse requirement: values[0]: Invalid value: \"{token}\": {'; '.join(errors)}")
    return token


def label_selector_matches(requirements: list[LabelRequirement], labels: Mapping[str, str]) -> bool:
    for req in requirements:
        has = req.key in labels
        value = labels.get(req.key)
        if req.op in ("=", "in"):
            ok = has and value in req.values
        elif req.op in ("!=", "notin"):
            ok = not has or value not in req.values
        elif req.op == "exists":
            ok = has
        elif req.op == "!":
            ok = not has
        else:
            try:
                ok = has and (int(value or "") > int(req.values[0]) if req.op == "gt" else int(value or "") < int(req.values[0]))
            except ValueError:
                ok = False
        if not ok:
            return False
    return True


# ---- the fields each resource offers ----------------------------------------------------------

POD_FIELDS = {
    name: name
    for name in (
        "metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
        "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName",
    )
} | {"spec.host": "spec.nodeName"}
"""pkg/registry/core/pod/strategy.go and the v1 field label conversion."""

NAMESPACE_FIELDS = {"metadata.name": "metadata.name", "status.phase": "status.phase"}

CORE_EVENT_FIELDS = {
    name: name
    for name in (
        "involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
        "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
        "reportingComponent", "source", "type", "metadata.namespace", "metadata.name",
    )
}

EVENTS_V1_FIELDS = {
    "reason": "reason",
    "regarding.kind": "involvedObject.kind",
    "regarding.namespace": "involvedObject.namespace",
    "regarding.name": "involvedObject.name",
    "regarding.uid": "involvedObject.uid",
    "regarding.apiVersion": "involvedObject.apiVersion",
    "regarding.resourceVersion": "involvedObject.resourceVersion",
    "regarding.fieldPath": "involvedObject.fieldPath",
    "reportingController": "reportingComponent",
    "source": "source",
    "type": "type",
    "metadata.namespace": "metadata.namespace",
    "metadata.name": "metadata.name",
}
"""pkg/apis/events/v1/conversion.go: events.k8s.io names map onto the stored Event's fields."""


def pod_fields(pod: Mapping[str, Any]) -> dict[str, str]:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    return {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.restartPolicy": spec.get("restartPolicy", ""),
        "spec.schedulerName": spec.get("schedulerName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "spec.hostNetwork": "true" if spec.get("hostNetwork") else "false",
        "status.phase": status.get("phase", ""),
        "status.podIP": status.get("podIP", ""),
        "status.nominatedNodeName": status.get("nominatedNodeName", ""),
    }


def namespace_fields(namespace: Mapping[str, Any]) -> dict[str, str]:
    return {
        "metadata.name": namespace.get("metadata", {}).get("name", ""),
        "status.phase": namespace.get("status", {}).get("phase", ""),
    }


def core_event_fields(event: Mapping[str, Any]) -> dict[str, str]:
    meta, involved = event.get("metadata", {}), event.get("involvedObject") or {}
    fields = {f"involvedObject.{k}": str(involved.get(k, "")) for k in
              ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")}
    fields.update({
        "reason": event.get("reason", ""),
        "reportingComponent": event.get("reportingComponent", ""),
        "source": (event.get("source") or {}).get("component", ""),
        "type": event.get("type", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.name": meta.get("name", ""),
    })
    return fields
