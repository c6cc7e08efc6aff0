"""apply(): perform a plan's operations in order, through pyroute2 (agent.netlink.tc)."""

from __future__ import annotations

from typing import Callable

from agent.model.direction import Direction
from agent.model.handles import PODBW_ROOT_HANDLE
from agent.model.shaping import (
    AddRedirect,
    CreateIfb,
    DeleteIfb,
    DeleteIngress,
    DeleteRoot,
    Device,
    Op,
    ReplaceTbf,
    SetGso,
    SetUp,
    Side,
)
from agent.netlink.errors import Gone, NetlinkError
from agent.netlink.socket import NetlinkSocket
from agent.netlink.tc import TcWriter

Failures = dict["Direction | None", NetlinkError]


class Writers:
    """The writers of one reconcile: the host's, kept by the reconciler, and the pod's, opened
    on its first write (most reconciles write nothing in the pod)."""

    def __init__(self, host: TcWriter, host_reader: NetlinkSocket, open_pod: Callable[[], TcWriter]) -> None:
        self.host = host
        self.host_reader = host_reader
        self._open_pod = open_pod
        self._pod: TcWriter | None = None

    def on(self, device: Device) -> TcWriter:
        if device.side is Side.HOST:
            return self.host
        if self._pod is None:
            self._pod = self._open_pod()
        return self._pod

    def ifindex(self, device: Device) -> int:
        """The device's ifindex, looked up by name for one the same plan created."""
        if device.ifindex:
            return device.ifindex
        link = self.host_reader.link(name=device.name)
        if link is None:
            raise Gone(f"host: {device.name} vanished after creation")
        return link.ifindex

    def close(self) -> None:
        if self._pod is not None:
            self._pod.close()
            self._pod = None


def apply(ops: tuple[Op, ...], writers: Writers, done: Callable[[Op, NetlinkError | None], None]) -> Failures:
    """Perform ops in order; `done` hears of each. A failure skips the rest of its direction's
    ops and is returned by direction; the other direction goes on. Gone (the pod is going away)
    ends it all."""
    failures: Failures = {}
    for op in ops:
        if op.direction in failures:
            continue
        try:
            _perform(op, writers)
        except NetlinkError as err:
            done(op, err)
            if isinstance(err, Gone):
                raise
            failures[op.direction] = err
        else:
            done(op, None)
    return failures


def _perform(op: Op, writers: Writers) -> None:
    match op:
        case ReplaceTbf(device=device, params=params, delete_first=handle):
            writer, ifindex = writers.on(device), writers.ifindex(device)
            if handle is not None:
                writer.delete_root(ifindex, handle, device.name)
            writer.replace_tbf(ifindex, PODBW_ROOT_HANDLE, params, device.name)
        case DeleteRoot(device=device, handle=handle):
            writers.on(device).delete_root(writers.ifindex(device), handle, device.name)
        case CreateIfb(name=name, alias=alias):
            writers.host.add_ifb(name)
            writers.host.set_up(writers.ifindex(Device(Side.HOST, name)), name, alias)
        case SetUp(device=device, alias=alias):
            writers.host.set_up(writers.ifindex(device), device.name, alias)
        case DeleteIfb(device=device):
            writers.host.delete_link(writers.ifindex(device), device.name)
        case AddRedirect(host=host, ifb=ifb):
            writers.host.add_ingress_redirect(writers.ifindex(host), writers.ifindex(ifb), host.name)
        case DeleteIngress(host=host):
            writers.host.delete_ingress(writers.ifindex(host), host.name)
        case SetGso(device=device, size_bytes=size_bytes):
            writers.on(device).set_gso_max_size(device.ifindex, size_bytes, device.name)
        case _:
            raise TypeError(f"unknown operation {op!r}")
