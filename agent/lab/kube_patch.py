"""The patch formats the apiserver accepts on PATCH, applied to plain JSON values.

- `application/merge-patch+json` (RFC 7386; what `kubectl annotate` sends): objects merge
  recursively, `null` deletes a key, anything else (lists included) replaces.
- `application/strategic-merge-patch+json` (the default of the Python clients): for the maps this
  stand-in lets change (labels, annotations, an Event's series) it merges as a merge patch does;
  a map's `$patch: replace|delete` directive is honoured, list directives are refused.
- `application/json-patch+json` (RFC 6902): add, remove, replace, move, copy, test.
"""

from __future__ import annotations

import copy
from typing import Any

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH]


class PatchError(ValueError):
    """The patch cannot be applied (the server answers 400, or 422 for a failed `test`)."""

    def __init__(self, message: str, unprocessable: bool = False) -> None:
        super().__init__(message)
        self.unprocessable = unprocessable


def apply_patch(content_type: str, document: Any, patch: Any) -> Any:
    """The patched copy of document; document itself is never changed."""
    if content_type == MERGE_PATCH:
        return merge_patch(document, patch)
    if content_type == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(document, patch)
    if content_type == JSON_PATCH:
        return json_patch(document, patch)
    raise PatchError(f"unsupported patch type {content_type!r}")


def merge_patch(document: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(document) if isinstance(document, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(document: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    return _strategic(document, patch)


def _strategic(document: Any, patch: dict[str, Any]) -> Any:
    directive = patch.get("$patch")
    rest = {k: v for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive == "replace":
        return _strip_nulls(copy.deepcopy(rest))
    if directive is not None:
        raise PatchError(f"unknown patch type {directive!r} in $patch")
    result = copy.deepcopy(document) if isinstance(document, dict) else {}
    for key, value in rest.items():
        if key.startswith("$"):
            raise PatchError(f"the lab's API stand-in does not support the strategic merge directive {key!r}")
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _strategic(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and any(isinstance(v, dict) and "$patch" in v for v in value):
            raise PatchError(f"the lab's API stand-in does not support $patch directives inside the list {key!r}")
        else:
            result[key] = copy.deepcopy(value)
    return result


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    return value


# ---- RFC 6902 ---------------------------------------------------------------------------------


def json_patch(document: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    result = copy.deepcopy(document)
    for index, op in enumerate(operations):
        if not isinstance(op, dict) or not isinstance(op.get("op"), str) or not isinstance(op.get("path"), str):
            raise PatchError(f"operation {index}: needs string 'op' and 'path'")
        result = _json_patch_op(result, op)
    return result


def _json_patch_op(document: Any, op: dict[str, Any]) -> Any:
    kind, path = op["op"], _pointer(op["path"])
    if kind in ("add", "replace", "test") and "value" not in op:
        raise PatchError(f"{kind} operation on {op['path']!r} has no value")
    if kind == "add":
        return _add(document, path, copy.deepcopy(op["value"]))
    if kind == "remove":
        document, _ = _remove(document, path)
        return document
    if kind == "replace":
        document, _ = _remove(document, path)
        return _add(document, path, copy.deepcopy(op["value"]))
    if kind in ("move", "copy"):
        if not isinstance(op.get("from"), str):
            raise PatchError(f"{kind} operation needs a string 'from'")
        source = _pointer(op["from"])
        if kind == "move":
            document, value = _remove(document, source)
        else:
            value = copy.deepcopy(_get(document, source))
        return _add(document, path, value)
    if kind == "test":
        if _get(document, path) != op["value"]:
            raise PatchError(f"testing value {op['path']} failed", unprocessable=True)
        return document
    raise PatchError(f"unknown JSON patch operation {kind!r}")


def _pointer(text: str) -> list[str]:
    if text == "":
        return []
    if not text.startswith("/"):
        raise PatchError(f"JSON pointer {text!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in text[1:].split("/")]


def _parent(document: Any, path: list[str]) -> Any:
    target = document
    for part in path[:-1]:
        target = _child(target, part)
    return target


def _child(container: Any, part: str) -> Any:
    if isinstance(container, dict):
        if part not in container:
            raise PatchError(f"path component {part!r} does not exist")
        return container[part]
    if isinstance(container, list):
        return container[_index(container, part, allow_end=False)]
    raise PatchError(f"path component {part!r} is inside a value that is not an object or a list")


def _index(container: list[Any], part: str, allow_end: bool) -> int:
    if part == "-" and allow_end:
        return len(container)
    if not part.isdigit() or (len(part) > 1 and part.startswith("0")):
        raise PatchError(f"{part!r} is not a list index")
    index = int(part)
    if index > len(container) or (index == len(container) and not allow_end):
        raise PatchError(f"list index {index} is out of range")
    return index


def _get(document: Any, path: list[str]) -> Any:
    target = document
    for part in path:
        target = _child(target, part)
    return target


def _add(document: Any, path: list[str], value: Any) -> Any:
    if not path:
        return value
    parent = _parent(document, path)
    if isinstance(parent, dict):
        parent[path[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, path[-1], allow_end=True), value)
    else:
        raise PatchError(f"cannot add {path[-1]!r} to a value that is not an object or a list")
    return document


def _remove(document: Any, path: list[str]) -> tuple[Any, Any]:
    if not path:
        raise PatchError("cannot remove the whole document")
    parent = _parent(document, path)
    if isinstance(parent, dict):
        if path[-1] not in parent:
            raise PatchError(f"cannot remove {path[-1]!r}: it does not exist")
        return document, parent.pop(path[-1])
    if isinstance(parent, list):
        return document, parent.pop(_index(parent, path[-1], allow_end=False))
    raise PatchError(f"cannot remove {path[-1]!r} from a value that is not an object or a list")
