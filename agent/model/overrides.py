"""The annotations file (`--annotations-file`): per-pod annotations that override what CRI
reports, so limits can change without recreating the pod (CRI only shows values at sandbox
creation). Format: a YAML mapping `namespace/name: {annotation key: value}`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from agent.model.valuetext import quote_value

if TYPE_CHECKING:
    import yaml

MAX_OVERRIDES_CHARS = 1024 * 1024
"""1 MiB: thousands of pods' worth; bounds parse time and memory for a file anyone may edit."""


class OverridesError(ValueError):
    """The annotations file is not valid YAML or not in the expected shape."""


def _yaml_error(text: str, exc: yaml.YAMLError) -> OverridesError:
    import yaml  # loaded by parse_overrides already

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
    problem = " ".join(str(problem).split())
    return OverridesError(f"annotations file: YAML error{' at ' + where if where else ''}: {problem}")


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


def _pod_annotations(pod_key: object, entry: object) -> dict[str, str]:
    if not isinstance(pod_key, str) or pod_key.count("/") != 1 or "" in pod_key.split("/"):
        raise OverridesError(
            f"annotations file: top-level key {quote_value(pod_key)} must be `namespace/name`"
        )
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
    """`namespace/name` -> annotations; an empty file means no overrides."""
    if not isinstance(text, str):
        raise OverridesError(f"annotations file: expected text, got {quote_value(text)}")
    if len(text) > MAX_OVERRIDES_CHARS:
        raise OverridesError(
            f"annotations file: {len(text)} characters is larger than 1 MiB ({MAX_OVERRIDES_CHARS})"
        )
    # Imported here: PyYAML (and the datetime/base64 it pulls in) stays out of agents that have
    # no annotations file.
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(text, exc) from None
    except RecursionError:
        # PyYAML's composer recurses once per nesting level.
        raise OverridesError("annotations file: YAML nested too deeply") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise OverridesError(
            f"annotations file: expected a mapping of `namespace/name` to annotations, "
            f"got {quote_value(document)}"
        )
    return {pod_key: _pod_annotations(pod_key, entry) for pod_key, entry in document.items()}


def merge_annotations(
    cri: Mapping[str, str], override: Mapping[str, str] | None
) -> dict[str, str]:
    """CRI's annotations with the file's on top, key by key."""
    merged = dict(cri)
    if override:
        merged.update(override)
    return merged
