"""The annotations file (`--annotations-file`): per-pod annotations that override what CRI
reports, so limits can change without recreating the pod (CRI only shows values at sandbox
creation). Format: a YAML mapping `pod key: {annotation key: value}`, where a pod key is
`namespace/name`, or for pods found from their network namespace alone (no CRI) the bare name
of the netns file. Anchors, aliases and merge keys are refused (agent/model/bounded_yaml.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from agent.model.valuetext import quote_value

if TYPE_CHECKING:
    import yaml

MAX_OVERRIDES_CHARS = 1024 * 1024
"""1 MiB: thousands of pods' worth; bounds parse time and memory for a file anyone may edit."""
MAX_NETNS_NAME_BYTES = 255
"""A netns name is a file name: NAME_MAX bytes."""
_PROBLEM_CHARS = 200
"""A YAML error may quote a tag of any length; the log line needs its start."""


class OverridesError(ValueError):
    """The annotations file is not valid YAML or not in the expected shape."""


def _yaml_error(text: str, exc: yaml.YAMLError) -> OverridesError:
    import yaml  # loaded by parse_overrides already

    from agent.model.bounded_yaml import RefusedYAML

    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
    elif isinstance(exc, yaml.reader.ReaderError):
        # A bad character: the reader reports an offset, not a line.
        where = f"line {text.count(chr(10), 0, exc.position) + 1}"
        character = exc.character
        shown = f"U+{character:04X}" if isinstance(character, int) else repr(character)
        problem = f"character {shown} is not allowed ({exc.reason})"
    else:
        where, problem = "", str(exc)
    problem = " ".join(str(problem)[: _PROBLEM_CHARS * 2].split())
    if len(problem) > _PROBLEM_CHARS:
        problem = problem[:_PROBLEM_CHARS] + "..."
    what = "refused" if isinstance(exc, RefusedYAML) else "YAML error"
    return OverridesError(f"annotations file: {what}{' at ' + where if where else ''}: {problem}")


def _annotation_value(pod_key: str, key: str, value: object) -> str:
    # bool is an int subclass, but `true` is surely a mistake for a quantity or duration.
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise OverridesError(
        f"annotations file: pod {quote_value(pod_key)}, annotation {quote_value(key)}: value must be a string or a "
        f"number, got {quote_value(value)}"
    )


def pod_key_problem(pod_key: object) -> str | None:
    """Why pod_key is neither `namespace/name` nor a netns file name; None when it is one."""
    if not isinstance(pod_key, str):
        return "must be `namespace/name` or a netns file name"
    if pod_key.count("/") > 1:
        return "has more than one `/`: expected `namespace/name` or a netns file name"
    if "/" in pod_key:
        namespace, name = pod_key.split("/")
        if not namespace or not name:
            return "must be `namespace/name` with neither part empty"
        return None
    if pod_key in ("", ".", ".."):
        return "is not a netns file name (nor `namespace/name`)"
    if "\0" in pod_key:
        return "must not contain a NUL character"
    size = len(pod_key.encode("utf-8", "surrogatepass"))
    if size > MAX_NETNS_NAME_BYTES:
        return f"is {size} bytes long: a netns file name has at most {MAX_NETNS_NAME_BYTES}"
    return None


def _pod_annotations(pod_key: str, entry: object) -> dict[str, str]:
    if not isinstance(entry, dict):
        raise OverridesError(
            f"annotations file: pod {quote_value(pod_key)} must map annotation keys to values, "
            f"got {quote_value(entry)}"
        )
    annotations: dict[str, str] = {}
    for key, value in entry.items():
        if not isinstance(key, str):
            raise OverridesError(
                f"annotations file: pod {quote_value(pod_key)}: annotation key {quote_value(key)} must be a string"
            )
        annotations[key] = _annotation_value(pod_key, key, value)
    return annotations


def parse_overrides(text: str) -> dict[str, dict[str, str]]:
    """Pod key (`namespace/name` or a netns name) -> annotations; an empty file means none."""
    if not isinstance(text, str):
        raise OverridesError(f"annotations file: expected text, got {quote_value(text)}")
    if len(text) > MAX_OVERRIDES_CHARS:
        raise OverridesError(
            f"annotations file: {len(text)} characters is larger than 1 MiB ({MAX_OVERRIDES_CHARS})"
        )
    # Imported here: PyYAML (and the datetime/base64 it pulls in) stays out of agents that have
    # no annotations file.
    import yaml

    from agent.model.bounded_yaml import load_bounded

    try:
        document = load_bounded(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(text, exc) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise OverridesError(
            f"annotations file: expected a mapping of pod keys (`namespace/name` or a netns name) to annotations, "
            f"got {quote_value(document)}"
        )
    overrides: dict[str, dict[str, str]] = {}
    for pod_key, entry in document.items():
        problem = pod_key_problem(pod_key)
        if problem is not None:
            raise OverridesError(f"annotations file: top-level key {quote_value(pod_key)} {problem}")
        overrides[pod_key] = _pod_annotations(pod_key, entry)
    return overrides

