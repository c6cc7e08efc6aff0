import pytest

from agent.model.handles import PODBW_ROOT_HANDLE, format_handle
from agent.model.ownership import Owner, classify_root, ifb_name


@pytest.mark.parametrize(
    ("kind", "handle", "owner"),
    [
        (None, 0, Owner.DEFAULT),
        ("noqueue", 0, Owner.DEFAULT),
        ("pfifo_fast", 0, Owner.DEFAULT),
        ("mq", 0x80010000, Owner.DEFAULT),
        ("tbf", PODBW_ROOT_HANDLE, Owner.PODBW),
        ("tbf", 0x10000, Owner.FOREIGN),  # the CNI bandwidth plugin's 1:
        ("htb", 0x10000, Owner.FOREIGN),
        ("tbf", 0x80020000, Owner.FOREIGN),  # `tc qdisc add ... root tbf` without a handle
        ("pfifo", 0x50630000, Owner.FOREIGN),
    ],
)
def test_classify_root(kind: str | None, handle: int, owner: Owner) -> None:
    assert classify_root(kind, handle) is owner


def test_ifb_name_is_stable_short_and_prefixed() -> None:
    name = ifb_name("a" * 64)
    assert name == ifb_name("a" * 64) and name.startswith("podbw") and len(name) == 15
    assert ifb_name("b" * 64) != name


def test_format_handle() -> None:
    assert format_handle(PODBW_ROOT_HANDLE) == "5062:"
    assert format_handle(0x10001) == "1:1"


def test_ifb_owner_names_the_runtime_and_netns_dir() -> None:
    from agent.model.ownership import IFALIAS_MAX_BYTES, ifb_owner

    assert ifb_owner("unix:///var/run/crio/crio.sock", "/var/run/netns") == (
        "podbw cri=unix:///var/run/crio/crio.sock netns=/var/run/netns"
    )
    assert ifb_owner(None, "/run/podbw-lab/a/netns") == "podbw cri=none netns=/run/podbw-lab/a/netns"
    assert ifb_owner("unix:///a.sock", "/n") != ifb_owner("unix:///b.sock", "/n")
    long = ifb_owner("unix:///" + "é" * 200, "/n")  # cut to the kernel's limit on a character boundary
    assert len(long.encode()) <= IFALIAS_MAX_BYTES and long.startswith("podbw cri=unix:///é")
