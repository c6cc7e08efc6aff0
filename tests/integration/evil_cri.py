"""A CRI server that misbehaves on purpose: unknown fields, huge answers, malformed info JSON,
or a socket that accepts and never answers. It serves the lab's own state file."""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from agent.cri import runtime_pb2 as pb
from agent.lab.cri_server import SERVICE_NAME, LabRuntimeService, StateFile


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def unknown_fields(huge_bytes: int = 0) -> bytes:
    """Fields a newer runtime might send: a varint (99) and a string (100, optionally huge)."""
    blob = b"x" * max(huge_bytes, 16)
    return _varint(99 << 3) + _varint(12345) + _varint((100 << 3) | 2) + _varint(len(blob)) + blob


class EvilRuntimeService(LabRuntimeService):
    def __init__(self, state: StateFile) -> None:
        super().__init__(state, pod_events=False)
        self.huge_list_bytes = 0
        """When set, ListPodSandbox answers carry an unknown field of this many bytes."""
        self.malformed_info_for: set[str] = set()
        """Pod names whose verbose info JSON is garbage."""

    def pod_sandbox_status(self, request: pb.PodSandboxStatusRequest, context: grpc.ServicerContext):
        response = super().pod_sandbox_status(request, context)
        if response.status.metadata.name in self.malformed_info_for:
            response.info["info"] = '{"runtimeSpec": {"linux": {"namespaces": [{"type": "network", "path": 7'
        return response

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Any, request_type: Any, extra=lambda: unknown_fields()) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=request_type.FromString,
                response_serializer=lambda message: message.SerializeToString() + extra(),
            )

        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Version": unary(self.version, pb.VersionRequest),
                "ListPodSandbox": unary(
                    self.list_pod_sandbox, pb.ListPodSandboxRequest, lambda: unknown_fields(self.huge_list_bytes)
                ),
                "PodSandboxStatus": unary(self.pod_sandbox_status, pb.PodSandboxStatusRequest),
            },
        )


class EvilCriServer:
    def __init__(self, state_path: str, socket_path: str) -> None:
        self.socket_path = socket_path
        self.service = EvilRuntimeService(StateFile(state_path))
        self._server = grpc.server(ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers((self.service.handler(),))
        self._server.add_insecure_port(f"unix://{socket_path}")
        self._server.start()

    def stop(self) -> None:
        self.service.stopping.set()
        self._server.stop(0).wait()
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)


class MuteSocket:
    """Accepts connections and never says a word: every CRI call must hit its deadline."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(socket_path)
        self._listener.listen(64)
        self._connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(connection)

    def stop(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)
        for connection in self._connections:
            connection.close()
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
