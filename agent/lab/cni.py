"""Runs the real CNI plugins against a pinned namespace, the way CRI-O (via ocicni/libcni) does.

Per pod: the `loopback` plugin on `lo` (ocicni's separate "cni-loopback" network), then the
network list `bridge` [+ `bandwidth`] on `eth0`, each plugin fed the previous one's result as
`prevResult`. DEL runs the list in reverse and tolerates what is already gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping

from agent.lab import process
from agent.lab.config import LabConfig
from agent.lab.errors import LabError

log = logging.getLogger(__name__)

CNI_PLUGIN_DIR = os.environ.get("PODBW_CNI_PATH", "/usr/lib/cni")
CNI_VERSION = "1.0.0"
POD_IFNAME = "eth0"
_LOOPBACK_NETWORK = {"cniVersion": CNI_VERSION, "name": "cni-loopback", "plugins": [{"type": "loopback"}]}


def ifb_name(network_name: str, container_id: str) -> str:
    """The ifb device the bandwidth plugin makes for a sandbox (its MustFormatHashWithPrefix)."""
    return ("bwp" + hashlib.sha512((network_name + container_id).encode()).hexdigest())[:15]


def conflist(config: LabConfig, cni_bandwidth: bool) -> dict[str, Any]:
    """CRI-O's 10-crio-bridge.conflist for this lab (no masquerade: no traffic leaves the node)."""
    plugins: list[dict[str, Any]] = [
        {
            "type": "bridge",
            "bridge": config.bridge,
            "isGateway": True,
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "routes": [{"dst": "0.0.0.0/0"}],
                "ranges": [[{"subnet": config.subnet}]],
                "dataDir": config.ipam_dir,
            },
        }
    ]
    if cni_bandwidth:
        plugins.append({"type": "bandwidth", "capabilities": {"bandwidth": True}})
    return {"cniVersion": CNI_VERSION, "name": config.network_name, "plugins": plugins}


@dataclass(frozen=True)
class CniResult:
    ip: str
    host_veth: str
    raw: dict[str, Any]


def parse_result(result: Mapping[str, Any], bridge: str) -> CniResult:
    """Pod IP and host veth: the interface without a sandbox that is not the bridge."""
    ips = result.get("ips") or []
    ip = str(ips[0]["address"]).split("/")[0] if ips else ""
    host_veth = ""
    for iface in result.get("interfaces") or []:
        name = iface.get("name", "")
        if not iface.get("sandbox") and name != bridge and not name.startswith("bwp"):
            host_veth = name
            break
    return CniResult(ip=ip, host_veth=host_veth, raw=dict(result))


@dataclass(frozen=True)
class CniInvocation:
    """The runtime side of a CNI call: which sandbox, which namespace, which K8S args."""

    container_id: str
    netns_path: str
    pod_namespace: str = ""
    pod_name: str = ""
    pod_uid: str = ""

    def cni_args(self) -> str:
        return (
            f"IgnoreUnknown=1;K8S_POD_NAMESPACE={self.pod_namespace};K8S_POD_NAME={self.pod_name};"
            f"K8S_POD_INFRA_CONTAINER_ID={self.container_id};K8S_POD_UID={self.pod_uid}"
        )


class CniRunner:
    """ADD/DEL of one lab's network for one sandbox at a time."""

    def __init__(self, config: LabConfig, cni_bandwidth: bool, plugin_dir: str = CNI_PLUGIN_DIR):
        self._config = config
        self._network = conflist(config, cni_bandwidth)
        self._plugin_dir = plugin_dir

    def add(self, call: CniInvocation, bandwidth: Mapping[str, int] | None = None) -> CniResult:
        runtime = {"bandwidth": dict(bandwidth)} if bandwidth else {}
        self._run_list(_LOOPBACK_NETWORK, "ADD", call, "lo", {})
        try:
            result = self._run_list(self._network, "ADD", call, POD_IFNAME, runtime)
        except LabError:
            # libcni leaves cleanup to the runtime; CRI-O runs DEL at once so no IP leaks.
            self.delete(call)
            raise
        parsed = parse_result(result or {}, self._config.bridge)
        if not parsed.ip or not parsed.host_veth:
            self.delete(call)
            raise LabError(f"CNI ADD for {call.pod_namespace}/{call.pod_name} returned no IP or veth: {result}")
        self._cache_result(call.container_id, result or {})
        return parsed

    def delete(self, call: CniInvocation) -> list[str]:
        """DEL in reverse plugin order; returns the errors it tolerated."""
        prev = self._cached_result(call.container_id)
        if not os.path.exists(call.netns_path):
            call = CniInvocation(call.container_id, "", call.pod_namespace, call.pod_name, call.pod_uid)
        errors = []
        for network, ifname in ((self._network, POD_IFNAME), (_LOOPBACK_NETWORK, "lo")):
            for plugin in reversed(network["plugins"]):
                try:
                    self._run_plugin(network, plugin, "DEL", call, ifname, {}, prev)
                except LabError as e:
                    log.debug("tolerated: %s", e)
                    errors.append(str(e))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._cache_path(call.container_id))
        return errors

    def _run_list(
        self, network: Mapping[str, Any], command: str, call: CniInvocation, ifname: str,
        runtime: Mapping[str, Any],
    ) -> dict[str, Any] | None:
        prev: dict[str, Any] | None = None
        for plugin in network["plugins"]:
            prev = self._run_plugin(network, plugin, command, call, ifname, runtime, prev)
        return prev

    def _run_plugin(
        self, network: Mapping[str, Any], plugin: Mapping[str, Any], command: str, call: CniInvocation,
        ifname: str, runtime: Mapping[str, Any], prev: Mapping[str, Any] | None,
    ) -> dict[str, Any] | None:
        # libcni's buildOneConfig: name and version from the list, runtimeConfig only for the
        # capabilities the plugin declares, prevResult from the plugin before it.
        conf = dict(plugin)
        conf["name"] = network["name"]
        conf["cniVersion"] = network["cniVersion"]
        caps = {k for k, v in (plugin.get("capabilities") or {}).items() if v}
        wanted = {k: v for k, v in runtime.items() if k in caps}
        if wanted:
            conf["runtimeConfig"] = wanted
        if prev is not None:
            conf["prevResult"] = prev
        plugin_type = str(plugin["type"])
        env = dict(os.environ)
        env.update(
            CNI_COMMAND=command,
            CNI_CONTAINERID=call.container_id,
            CNI_NETNS=call.netns_path,
            CNI_IFNAME=ifname,
            CNI_ARGS=call.cni_args(),
            CNI_PATH=self._plugin_dir,
        )
        binary = os.path.join(self._plugin_dir, plugin_type)
        if not os.access(binary, os.X_OK):
            raise LabError(f"CNI plugin {binary} not found (install containernetworking-plugins)")
        proc = process.run([binary], input_bytes=json.dumps(conf).encode(), env=env, check=False)
        out = proc.stdout.decode(errors="replace").strip()
        if proc.returncode != 0:
            raise LabError(
                f"CNI {plugin_type} {command} for {call.pod_namespace}/{call.pod_name}: "
                f"{_plugin_error(out, proc.stderr.decode(errors='replace'))}"
            )
        if command != "ADD" or not out:
            return None
        try:
            return json.loads(out)
        except ValueError as e:
            raise LabError(f"CNI {plugin_type} ADD printed no JSON result: {out[:200]}") from e

    def _cache_path(self, container_id: str) -> str:
        return os.path.join(self._config.cni_cache_dir, f"{container_id}.json")

    def _cache_result(self, container_id: str, result: Mapping[str, Any]) -> None:
        os.makedirs(self._config.cni_cache_dir, exist_ok=True)
        with open(self._cache_path(container_id), "w", encoding="utf-8") as f:
            json.dump(result, f)

    def _cached_result(self, container_id: str) -> dict[str, Any] | None:
        try:
            with open(self._cache_path(container_id), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None


def _plugin_error(stdout: str, stderr: str) -> str:
    """The plugin's JSON error (`msg: details`), else whatever it printed."""
    with contextlib.suppress(ValueError, AttributeError):
        err = json.loads(stdout)
        msg = str(err.get("msg", "")).strip()
        details = str(err.get("details", "")).strip()
        if msg:
            text = f"{msg}: {details}" if details else msg
            return f"{text} ({stderr.strip()})" if stderr.strip() else text
    return (stdout + " " + stderr).strip() or "failed without a message"
