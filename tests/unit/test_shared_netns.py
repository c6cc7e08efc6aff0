"""one_pod_per_netns: the oldest sandbox keeps a shared namespace, the same one every time."""

from __future__ import annotations

import itertools

import pytest

from agent.discovery.shared_netns import one_pod_per_netns
from agent.model.pod import Pod, display_key


def pod(sandbox_id: str, netns: str, created_at_ns: int) -> Pod:
    return Pod(sandbox_id, f"uid-{sandbox_id}", "ns", sandbox_id, f"/run/netns/{netns}", created_at_ns=created_at_ns)


A = pod("a", "one", 5)
B = pod("b", "one", 3)  # older than A
C = pod("c", "two", 9)
D = pod("d", "one", 3)  # as old as B; B wins by id
U = pod("u", "unreadable", 1)


def identity(p: Pod):
    return None if "unreadable" in p.netns_path else p.netns_path


@pytest.mark.parametrize(
    ("pods", "kept", "left_out"),
    [
        ([A, C], {"a", "c"}, {}),
        ([A, B, C], {"b", "c"}, {"a": "b"}),
        ([A, B, D], {"b"}, {"a": "b", "d": "b"}),
        ([U, A, B], {"u", "b"}, {"a": "b"}),
        ([], set(), {}),
    ],
)
def test_the_oldest_then_smallest_id_keeps_the_namespace(pods, kept, left_out) -> None:
    for order in itertools.permutations(pods):
        got_kept, got_left_out = one_pod_per_netns(list(order), identity)
        assert {p.sandbox_id for p in got_kept} == kept
        assert {p.sandbox_id: owner.sandbox_id for p, owner in got_left_out} == left_out


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("shop/web-0", "shop/web-0"),
        ("kube-system/coredns-5d78c9869d-x2x7k", "kube-system/coredns-5d78c9869d-x2x7k"),
        ("4d72b360-170f-47a8-9513-34d9e7be5c13", "4d72b360-170f-47a8-9513-34d9e7be5c13"),
        ("shop/web\nERROR forged line", "'shop/web\\nERROR forged line'"),
        ("shop/a b", "'shop/a b'"),
        ("a/b/c", "'a/b/c'"),
        ("", "''"),
        ("x/" + "y" * 300, repr(("x/" + "y" * 300)[:40]) + "... (302 chars)"),
    ],
)
def test_display_key_escapes_what_is_not_a_plain_name(key: str, shown: str) -> None:
    assert display_key(key) == shown
    assert "\n" not in display_key(key)
