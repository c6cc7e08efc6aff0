"""Read the pinned network namespace path out of a runtime's verbose PodSandboxStatus info.

CRI-O and containerd both put one JSON document under info["info"], and both include the
sandbox's OCI spec as `runtimeSpec`, whose network namespace entry names the pin. containerd
adds `netNamespaceClosed` (its pin is gone) and, since 2.0, `sandboxMetadata`, whose NetNSPath
is the pin it made, there even when `runtimeSpec` is not (containerd's SandboxInfo, in
internal/cri/server/podsandbox/types/sandbox_info.go).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agent.cri.errors import CriInfoError

INFO_KEY = "info"
"""CRI-O and containerd put their whole verbose status, as one JSON string, under this key."""
MAX_INFO_BYTES = 4 * 1024 * 1024
"""Real info documents are a few KiB; a bigger one is refused before json.loads spends on it."""


def netns_path_from_info(info: Mapping[str, str]) -> str | None:
    """Path of the sandbox's network namespace from `info`, or None when it names none.

    None means: no "info" key; containerd says the namespace is closed; or neither a "network"
    entry with a non-empty path in runtimeSpec.linux.namespaces nor a non-empty
    sandboxMetadata.Metadata.NetNSPath (host-network pods have neither). CriInfoError means
    the document is there but broken: not JSON, too big, nested too deep, or a field of the
    wrong type.
    """
    if not isinstance(info, Mapping):
        raise CriInfoError(f"verbose info: expected a map, got {type(info).__name__}")
    text = info.get(INFO_KEY)
    if text is None:
        return None
    document = _load_json(text)
    if _optional_field(document, "netNamespaceClosed", bool, "info"):
        return None  # containerd found the pin unmounted or removed: nothing left to shape
    return _runtime_spec_netns_path(document) or _sandbox_metadata_netns_path(document)


def _runtime_spec_netns_path(document: dict[str, Any]) -> str | None:
    runtime_spec = _optional_field(document, "runtimeSpec", dict, "info")
    if runtime_spec is None:
        return None
    linux = _optional_field(runtime_spec, "linux", dict, "runtimeSpec")
    if linux is None:
        return None
    namespaces = _optional_field(linux, "namespaces", list, "runtimeSpec.linux")
    if namespaces is None:
        return None
    for index, entry in enumerate(namespaces):
        where = f"runtimeSpec.linux.namespaces[{index}]"
        if not isinstance(entry, dict):
            raise CriInfoError(f"verbose info: {where} is {_json_type(entry)}, expected an object")
        if entry.get("type") != "network":
            continue
        path = _optional_field(entry, "path", str, where)
        if path:
            return path
    return None


def _sandbox_metadata_netns_path(document: dict[str, Any]) -> str | None:
    metadata = _optional_field(document, "sandboxMetadata", dict, "info")
    if metadata is None:
        return None
    inner = _optional_field(metadata, "Metadata", dict, "sandboxMetadata")
    if inner is None:
        return None
    return _optional_field(inner, "NetNSPath", str, "sandboxMetadata.Metadata") or None


def _load_json(text: object) -> dict[str, Any]:
    if not isinstance(text, str):
        raise CriInfoError(f"verbose info: {INFO_KEY!r} is {type(text).__name__}, expected a JSON string")
    # len() counts characters; UTF-8 needs up to 4 bytes each, so encode only when it matters.
    too_big = len(text) > MAX_INFO_BYTES or (
        len(text) * 4 > MAX_INFO_BYTES
        and len(text.encode("utf-8", "surrogatepass")) > MAX_INFO_BYTES
    )
    if too_big:
        raise CriInfoError(f"verbose info: larger than {MAX_INFO_BYTES} bytes")
    try:
        document = json.loads(text)
    except RecursionError:
        raise CriInfoError("verbose info: JSON nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError and bad surrogates alike
        raise CriInfoError(f"verbose info: not valid JSON: {' '.join(str(exc).split())}") from None
    if not isinstance(document, dict):
        raise CriInfoError(f"verbose info: top level is {_json_type(document)}, expected an object")
    return document


def _optional_field(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if value is None or isinstance(value, kind):
        return value
    raise CriInfoError(
        f"verbose info: {where}.{key} is {_json_type(value)}, expected {_json_type(kind())}"
    )


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"
