"""NetlinkSocket over a scripted socket: single gets, dumps and their retries, the link-name
cache, record reuse, and a namespace that goes away. The integration tests repeat the
essentials against real namespaces."""

from __future__ import annotations

import errno
import struct
from typing import Callable

import pytest

from agent.netlink import codec
from agent.netlink import socket as nlsocket
from agent.netlink.errors import Busy, Gone, NetlinkError, PermissionDenied
from agent.netlink.socket import MAX_DUMP_RETRIES, NetlinkSocket, NetlinkSocketPool
from tests.unit.netlink_wire import done, error, link_payload, nlmsg, nsid_payload, qdisc_payload, stats_payload

Answer = Callable[[int, bytes], list[bytes]]
"""(seq, request) -> the datagrams the kernel sends back."""


class ScriptedSocket:
    """Answers each request in send() with the next scripted function's datagrams."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.queue: list[bytes] = []
        self.closed = False

    def send(self, data: bytes) -> int:
        self.requests.append(data)
        off = 0
        while off < len(data):  # several requests in one send
            length, _type, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
            self.queue += self.answers.pop(0)(seq, data[off : off + length])
            off += length
        return len(data)

    def recv(self, size: int) -> bytes:
        return self.queue.pop(0)

    def close(self) -> None:
        self.closed = True


def opened(*answers: Answer, identity=None) -> tuple[NetlinkSocket, list[ScriptedSocket]]:
    made: list[ScriptedSocket] = []

    def opener(path):
        made.append(ScriptedSocket(*answers))
        return made[-1], identity

    return NetlinkSocket(None, opener=opener), made


def reply(msg_type: int, payload: bytes, then_ack: bool = True) -> Answer:
    return lambda seq, _: [nlmsg(msg_type, payload, seq=seq, flags=0) + (error(seq) if then_ack else b"")]


def refuse(code: int) -> Answer:
    return lambda seq, _: [error(seq, code)]


def dump(msg_type: int, *payloads: bytes, flags: int = codec.NLM_F_MULTI, status: int = 0) -> Answer:
    """The payloads over two datagrams, then DONE."""
    def answer(seq: int, _: bytes) -> list[bytes]:
        messages = [nlmsg(msg_type, p, seq=seq, flags=flags) for p in payloads] + [done(seq, status, flags)]
        half = max(1, len(messages) // 2)
        return [b"".join(part) for part in (messages[:half], messages[half:]) if part]
    return answer


# ---- single gets ---------------------------------------------------------------------------

def test_a_get_skips_stale_answers_and_waits_for_the_ack() -> None:
    def answer(seq: int, _: bytes) -> list[bytes]:
        stale = nlmsg(codec.RTM_NEWLINK, link_payload(1, "stale"), seq=seq - 1, flags=0)
        return [stale + nlmsg(codec.RTM_NEWLINK, link_payload(), seq=seq, flags=0), error(seq)]

    sock, _ = opened(answer)
    assert sock.link(7).name == "eth0"


@pytest.mark.parametrize(
    ("code", "raised"),
    [(errno.ENODEV, None), (errno.ENXIO, None), (errno.EPERM, PermissionDenied), (errno.EBUSY, Busy), (errno.EIO, NetlinkError)],
)
def test_link_errors(code: int, raised) -> None:
    sock, made = opened(refuse(code), reply(codec.RTM_NEWLINK, link_payload()))
    if raised is None:
        assert sock.link(name="gone0") is None  # no such device: an answer, not a failure
    else:
        with pytest.raises(raised) as info:
            sock.link(3)
        assert info.value.errno == code and "get link 3" in str(info.value)
    assert sock.link(7) is not None and len(made) == 1, "a refusal leaves the socket usable"


@pytest.mark.parametrize(("code", "absent"), [(errno.ENOENT, True), (errno.EINVAL, True), (errno.ENODEV, False)])
def test_qdisc_absent_or_device_gone(code: int, absent: bool) -> None:
    sock, _ = opened(refuse(code))
    if absent:
        assert sock.qdisc(3, 0xFFFFFFFF) is None
    else:
        with pytest.raises(Gone):
            sock.qdisc(3, 0xFFFFFFFF)


def test_a_get_answered_by_the_ack_alone_is_none() -> None:
    sock, _ = opened(refuse(0))  # the kernel's placeholder qdiscs: no message, only the ACK
    assert sock.qdisc(3, 0xFFFFFFFF) is None


def test_nsid_of(tmp_path) -> None:
    pin = tmp_path / "pin"
    pin.write_text("")
    sock, _ = opened(reply(codec.RTM_NEWNSID, nsid_payload(4)), reply(codec.RTM_NEWNSID, nsid_payload(-1)))
    assert sock.nsid_of(str(pin)) == 4
    assert sock.nsid_of(str(pin)) is None
    with pytest.raises(Gone):
        sock.nsid_of(str(tmp_path / "missing"))


# ---- dumps ---------------------------------------------------------------------------------

def test_qdiscs_over_several_datagrams_and_reused_when_unchanged() -> None:
    payloads = [qdisc_payload(ifindex=i) for i in (1, 2, 3)]
    changed = [payloads[0], qdisc_payload(ifindex=2, pkt64=1), payloads[2]]
    sock, _ = opened(dump(codec.RTM_NEWQDISC, *payloads), dump(codec.RTM_NEWQDISC, *changed))
    first, second = sock.qdiscs(), sock.qdiscs()
    assert [q.ifindex for q in first] == [1, 2, 3]
    assert second[0] is first[0] and second[2] is first[2]  # unchanged bytes: the same record
    assert second[1] is not first[1] and second[1].packets == 1


def names(*links: tuple[int, str]) -> Answer:
    return dump(codec.RTM_NEWLINK, *(link_payload(i, n, stats=False) for i, n in links))


def test_links_join_getstats_counters_to_the_names_dump() -> None:
    sock, made = opened(dump(codec.RTM_NEWSTATS, stats_payload(1), stats_payload(7)), names((1, "lo"), (7, "eth0")))
    links = sock.links()
    assert [(link.ifindex, link.name) for link in links] == [(1, "lo"), (7, "eth0")]
    assert links[1].rx_bytes == 5_000_000_000_123 and links[1].peer_ifindex == 42
    kinds = [struct.unpack_from("=H", r, 4)[0] for r in made[0].requests]
    assert kinds == [codec.RTM_GETSTATS, codec.RTM_GETLINK]


def test_an_unknown_device_refreshes_the_names_once() -> None:
    sock, made = opened(
        dump(codec.RTM_NEWSTATS, stats_payload(1)), names((1, "lo")),
        dump(codec.RTM_NEWSTATS, stats_payload(1), stats_payload(9), stats_payload(11)), names((1, "lo"), (9, "new0")),
    )
    sock.links()
    links = sock.links()
    assert [link.name for link in links] == ["lo", "new0"]  # 11 went away between the dumps
    assert len(made[0].requests) == 4


def test_a_kernel_without_getstats_gets_full_link_dumps() -> None:
    sock, made = opened(dump(codec.RTM_NEWSTATS, status=-errno.EOPNOTSUPP), dump(codec.RTM_NEWLINK, link_payload()),
                        dump(codec.RTM_NEWLINK, link_payload()))
    assert sock.links()[0].rx_bytes == 5_000_000_000_123
    assert sock.links()[0].name == "eth0"
    assert [struct.unpack_from("=H", r, 4)[0] for r in made[0].requests] == [codec.RTM_GETSTATS] + [codec.RTM_GETLINK] * 2


def test_links_and_qdiscs_in_one_send_with_the_second_refused_busy() -> None:
    busy = lambda seq, _: [error(seq, errno.EBUSY)]  # noqa: E731 (an earlier dump of the send still ran)
    sock, made = opened(
        dump(codec.RTM_NEWSTATS, stats_payload(7)), busy, dump(codec.RTM_NEWQDISC, qdisc_payload()), names((7, "eth0")),
    )
    links, qdiscs = sock.links_and_qdiscs()
    assert [link.name for link in links] == ["eth0"] and [q.ifindex for q in qdiscs] == [9]
    assert len(made[0].requests) == 3  # both, the qdiscs again, the names


INTR = codec.NLM_F_MULTI | codec.NLM_F_DUMP_INTR


def test_an_interrupted_dump_is_repeated_until_consistent() -> None:
    sock, made = opened(dump(codec.RTM_NEWQDISC, qdisc_payload(1), flags=INTR), dump(codec.RTM_NEWQDISC, qdisc_payload()))
    assert [q.ifindex for q in sock.qdiscs()] == [9]
    seqs = [struct.unpack_from("=I", r, 8)[0] for r in made[0].requests]
    assert len(set(seqs)) == 2  # a fresh sequence number per attempt


def test_a_dump_interrupted_every_time_gives_up_busy() -> None:
    sock, made = opened(*(dump(codec.RTM_NEWQDISC, qdisc_payload(), flags=INTR) for _ in range(2 + MAX_DUMP_RETRIES)))
    with pytest.raises(Busy, match="interrupted"):
        sock.qdiscs()
    assert len(made[0].requests) == 1 + MAX_DUMP_RETRIES


def test_a_dump_refused_by_the_kernel_raises_and_keeps_the_socket() -> None:
    sock, made = opened(dump(codec.RTM_NEWQDISC, status=-errno.EPERM), dump(codec.RTM_NEWQDISC, qdisc_payload()))
    with pytest.raises(PermissionDenied):
        sock.qdiscs()
    assert len(sock.qdiscs()) == 1 and len(made) == 1


def test_a_request_that_fails_midway_drops_the_socket_for_a_fresh_one() -> None:
    def cut_short(seq: int, _: bytes) -> list[bytes]:
        return [nlmsg(codec.RTM_NEWQDISC, qdisc_payload(), seq=seq)[:30]]

    sock, made = opened(cut_short, dump(codec.RTM_NEWQDISC, qdisc_payload()))
    with pytest.raises(NetlinkError, match="truncated"):
        sock.qdiscs()
    assert made[0].closed
    # The kernel's dump may still run on the old socket: the next request opens a new one
    # (whose script starts over with the cut answer).
    with pytest.raises(NetlinkError):
        sock.qdiscs()
    assert len(made) == 2


def test_a_timeout_is_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    def timing_out(self, size: int) -> bytes:
        raise TimeoutError("timed out")

    monkeypatch.setattr(ScriptedSocket, "recv", timing_out)
    sock, made = opened(lambda seq, _: [])
    with pytest.raises(Busy, match="timed out"):
        sock.qdisc(1, 0xFFFFFFFF)
    assert made[0].closed


# ---- the namespace going away --------------------------------------------------------------

def test_a_pin_that_no_longer_leads_to_the_namespace_raises_gone(tmp_path, monkeypatch) -> None:
    pin = tmp_path / "pin"
    pin.write_text("")
    identities = {"now": (1, 100)}
    monkeypatch.setattr(nlsocket, "netns_identity", lambda path: identities["now"])
    made: list[ScriptedSocket] = []

    def opener(path):
        made.append(ScriptedSocket(dump(codec.RTM_NEWQDISC, qdisc_payload())))
        return made[-1], (1, 100)

    sock = NetlinkSocket(str(pin), opener=opener)
    assert len(sock.qdiscs()) == 1
    identities["now"] = (1, 101)  # unmounted and pinned again: another namespace
    with pytest.raises(Gone, match="another namespace"):
        sock.qdiscs()
    assert sock.closed and made[0].closed
    with pytest.raises(Gone, match="closed"):
        sock.link(1)


# ---- the pool ------------------------------------------------------------------------------

def test_pool_reuses_replaces_closed_and_retains() -> None:
    made: list[NetlinkSocket] = []

    def factory(path: str | None) -> NetlinkSocket:
        made.append(NetlinkSocket(path, opener=lambda p: (ScriptedSocket(), None)))
        return made[-1]

    pool = NetlinkSocketPool(factory)
    a, b, own = pool.get("/ns/a"), pool.get("/ns/b"), pool.get(None)
    assert pool.get("/ns/a") is a and len(made) == 3
    a.close()  # as after Gone
    a2 = pool.get("/ns/a")
    assert a2 is not a and not a2.closed
    pool.retain(["/ns/a"])
    assert b.closed and not a2.closed and not own.closed
    pool.forget("/ns/a")
    assert a2.closed
    pool.close_all()
    assert own.closed
