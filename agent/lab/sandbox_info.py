"""The verbose PodSandboxStatus info the lab's CRI server sends, in each runtime's layout.

Both put one JSON document under info["info"]; trimmed to the fields a reader could rely on.
CRI-O 1.31 (drop_infra_ctr: pid 0): sandboxID, image, pid, runtimeSpec. containerd 2.x
(SandboxInfo in internal/cri/server/podsandbox/types/sandbox_info.go): pid, processStatus,
netNamespaceClosed, image, snapshot, runtime, config (the PodSandboxConfig), runtimeSpec,
cniResult and sandboxMetadata; a host-network sandbox has no network namespace entry and no
NetNSPath. The lab has no pause process, so pid is 0 for both.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from agent.lab.runtimes import CONTAINERD

if TYPE_CHECKING:
    from agent.lab.cri_server import LabSandbox

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
NODE_NAMESPACE_MODE = 2
"""runtime.v1 NamespaceMode NODE, as Go's JSON writes an enum: a number."""


def verbose_info(runtime: str, pod: LabSandbox) -> dict[str, str]:
    document = _containerd_document(pod) if runtime == CONTAINERD.name else _crio_document(pod)
    return {"info": json.dumps(document)}


def _crio_document(pod: LabSandbox) -> dict[str, Any]:
    return {
        "sandboxID": pod.sandbox_id,
        "image": "",
        "pid": 0,
        "runtimeSpec": {
            "linux": {
                "namespaces": [
                    {"type": "network", "path": pod.netns_path},
                    {"type": "ipc"},
                    {"type": "uts"},
                ]
            }
        },
    }


def _containerd_document(pod: LabSandbox) -> dict[str, Any]:
    netns_path = "" if pod.host_network else pod.netns_path
    namespaces: list[dict[str, str]] = [{"type": "pid"}, {"type": "ipc"}, {"type": "mount"}]
    if not pod.host_network:  # containerd drops the network and uts entries for host network
        namespaces[2:2] = [{"type": "uts"}]
        namespaces.append({"type": "network", "path": netns_path})
    config = _pod_sandbox_config(pod)
    cni_result = None if pod.host_network else {
        "Interfaces": {"eth0": {"IPConfigs": [{"IP": pod.ip, "Gateway": ""}], "Mac": "", "Sandbox": netns_path}},
        "DNS": [{}, {}],
        "Routes": None,
    }
    return {
        "pid": 0,
        "processStatus": "running",
        # containerd checks this only for sandboxes with a namespace of their own.
        "netNamespaceClosed": bool(netns_path) and not os.path.exists(netns_path),
        "image": PAUSE_IMAGE,
        "snapshotKey": pod.sandbox_id,
        "snapshotter": "overlayfs",
        "runtimeType": "io.containerd.runc.v2",
        "runtimeOptions": None,
        "config": config,
        "runtimeSpec": {
            "ociVersion": "1.2.0",
            "process": {"args": ["/pause"], "cwd": "/"},
            "root": {"path": "rootfs", "readonly": True},
            "annotations": {
                "io.kubernetes.cri.container-type": "sandbox",
                "io.kubernetes.cri.sandbox-id": pod.sandbox_id,
                "io.kubernetes.cri.sandbox-name": pod.name,
                "io.kubernetes.cri.sandbox-namespace": pod.namespace,
                "io.kubernetes.cri.sandbox-uid": pod.uid,
            },
            "linux": {"namespaces": namespaces},
        },
        "cniResult": cni_result,
        "sandboxMetadata": {
            "Version": "v1",
            "Metadata": {
                "ID": pod.sandbox_id,
                "Name": f"{pod.name}_{pod.namespace}_{pod.uid}_{pod.attempt}",
                "Config": config,
                "NetNSPath": netns_path,
                "IP": "" if pod.host_network else pod.ip,
                "AdditionalIPs": None,
                "RuntimeHandler": "",
                "CNIResult": cni_result,
                "ProcessLabel": "",
            },
        },
    }


def _pod_sandbox_config(pod: LabSandbox) -> dict[str, Any]:
    """The PodSandboxConfig kubelet sent, as Go's JSON writes the protobuf struct."""
    namespace_options = {"network": NODE_NAMESPACE_MODE} if pod.host_network else {}
    return {
        "metadata": {"name": pod.name, "uid": pod.uid, "namespace": pod.namespace, "attempt": pod.attempt},
        "hostname": pod.name,
        "log_directory": f"/var/log/pods/{pod.namespace}_{pod.name}_{pod.uid}",
        "labels": pod.labels,
        "annotations": pod.annotations,
        "linux": {"security_context": {"namespace_options": namespace_options}},
    }
