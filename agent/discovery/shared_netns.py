"""Sandboxes that claim one network namespace: one pod owns it, chosen the same way every time.

Two pods on one namespace would each put their own limit on the same devices, flipping them at
every resync. The oldest sandbox (then the smallest id) keeps it; the others are left out.
"""

from __future__ import annotations

from typing import Callable, Hashable, Sequence

from agent.model.pod import Pod


def one_pod_per_netns(
    pods: Sequence[Pod], identity: Callable[[Pod], Hashable | None]
) -> tuple[list[Pod], list[tuple[Pod, Pod]]]:
    """(the pods kept, [(a pod left out, the pod that keeps its namespace)]). `identity` names a
    pod's namespace (device and inode); a pod whose namespace cannot be read (None) is kept."""
    keyed = [(pod, identity(pod)) for pod in pods]
    owners: dict[Hashable, Pod] = {}
    for pod, key in keyed:
        if key is not None and (key not in owners or _order(pod) < _order(owners[key])):
            owners[key] = pod
    kept, left_out = [], []
    for pod, key in keyed:
        if key is None or owners[key] is pod:
            kept.append(pod)
        else:
            left_out.append((pod, owners[key]))
    return kept, left_out


def _order(pod: Pod) -> tuple[int, str]:
    return (pod.created_at_ns, pod.sandbox_id)
