"""Structured fields of a log line about a pod, for `log.warning(msg, extra=pod_fields(...))`:
the formatters render them as separate, escaped fields, so a pod name cannot forge a line."""

from __future__ import annotations

from enum import Enum

from agent.model.pod import Pod


def pod_fields(pod: Pod, direction: Enum | str | None = None, cause: str | None = None) -> dict[str, str]:
    """`namespace` and `pod`, plus `direction` and `cause` when given."""
    fields = {"namespace": pod.namespace, "pod": pod.name}
    if direction is not None:
        fields["direction"] = str(direction.value) if isinstance(direction, Enum) else direction
    if cause is not None:
        fields["cause"] = cause
    return fields
