"""Where a lab's objects live: every name and path derives from the lab name alone.

Deriving everything from the name is what lets `down` (or `down --all`) find a lab's objects
after the process that made them died, and lets two labs run side by side without colliding.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, replace

from agent.lab.errors import LabError

LAB_ROOT = "/run/podbw-lab"
"""Parent of every lab's state directory (and of the default lab's socket)."""
SYSTEM_NETNS_DIR = "/var/run/netns"
"""Where CRI-O's pinns and `ip netns` pin network namespaces."""
DEFAULT_NAME = "default"

_NAME_RE = re.compile(r"[a-z0-9-]{1,20}")


def validate_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise LabError(f"invalid lab name {name!r}: use 1-20 characters from [a-z0-9-]")
    return name


@dataclass(frozen=True)
class LabConfig:
    """Names and paths of one lab instance."""

    name: str
    bridge: str
    subnet: str
    network_name: str
    """CNI network name (the bandwidth plugin hashes it into its ifb names)."""
    state_dir: str
    socket: str
    netns_dir: str

    @classmethod
    def for_name(cls, name: str = DEFAULT_NAME, netns_dir: str | None = None) -> LabConfig:
        validate_name(name)
        state_dir = os.path.join(LAB_ROOT, name)
        if name == DEFAULT_NAME:
            # CRI-O's own default network, so the default lab looks like a stock CRI-O node.
            bridge, subnet, network = "cni0", "10.85.0.0/16", "crio"
            socket = os.path.join(LAB_ROOT, "crio.sock")
        else:
            digest = hashlib.sha1(name.encode()).digest()
            bridge = "pbw" + digest.hex()[:8]
            subnet = f"10.{86 + int.from_bytes(digest, 'big') % 150}.0.0/16"
            network = f"podbw-{name}"
            socket = os.path.join(state_dir, "crio.sock")
        return cls(
            name=name,
            bridge=bridge,
            subnet=subnet,
            network_name=network,
            state_dir=state_dir,
            socket=socket,
            netns_dir=os.path.abspath(netns_dir) if netns_dir else SYSTEM_NETNS_DIR,
        )

    @classmethod
    def existing(cls, name: str = DEFAULT_NAME) -> LabConfig:
        """The config of a lab that may already be up: its netns dir comes from its state file."""
        config = cls.for_name(name)
        try:
            with open(config.state_file, encoding="utf-8") as f:
                netns_dir = json.load(f).get("netns_dir")
        except (OSError, ValueError):
            return config
        return replace(config, netns_dir=netns_dir) if isinstance(netns_dir, str) and netns_dir else config

    # Files inside the state directory.
    @property
    def state_file(self) -> str:
        return os.path.join(self.state_dir, "state.json")

    @property
    def lock_file(self) -> str:
        return os.path.join(self.state_dir, "lock")

    @property
    def ipam_dir(self) -> str:
        return os.path.join(self.state_dir, "ipam")

    @property
    def pending_dir(self) -> str:
        """Journal of pods being created: lets `down` find a pod whose `add` died half-way."""
        return os.path.join(self.state_dir, "pending")

    @property
    def cni_cache_dir(self) -> str:
        """CNI ADD results, passed back as prevResult on DEL (libcni keeps the same cache)."""
        return os.path.join(self.state_dir, "cni")

    @property
    def cri_pid_file(self) -> str:
        return os.path.join(self.state_dir, "cri-server.pid")

    @property
    def cri_log_file(self) -> str:
        return os.path.join(self.state_dir, "cri-server.log")

    @property
    def node_name(self) -> str:
        """The Kubernetes node the lab stands for: spec.nodeName of its pods in the API stand-in."""
        return f"podbw-lab-{self.name}"

    @property
    def kube_dir(self) -> str:
        """The API stand-in's CA, certificate, key, token and object store."""
        return os.path.join(self.state_dir, "kube-api")

    @property
    def kubeconfig(self) -> str:
        """Server, CA and token of the lab's API stand-in, for kubectl and the agent."""
        return os.path.join(self.state_dir, "kubeconfig")

    @property
    def kube_pid_file(self) -> str:
        return os.path.join(self.state_dir, "kube-api.pid")

    @property
    def kube_log_file(self) -> str:
        return os.path.join(self.state_dir, "kube-api.log")

    @property
    def netns_dir_is_private(self) -> bool:
        """True when the netns dir lives inside the state dir, so everything in it is ours."""
        return is_within(self.netns_dir, self.state_dir)


def is_within(path: str, directory: str) -> bool:
    path, directory = os.path.abspath(path), os.path.abspath(directory)
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def lab_names() -> list[str]:
    """Names of every lab with a state directory under LAB_ROOT."""
    try:
        entries = sorted(os.listdir(LAB_ROOT))
    except FileNotFoundError:
        return []
    return [e for e in entries if _NAME_RE.fullmatch(e) and os.path.isdir(os.path.join(LAB_ROOT, e))]
