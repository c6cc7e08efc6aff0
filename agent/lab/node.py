"""LabNode: a CRI-O- or containerd-like node on this machine (pods = pinned namespaces wired by
real CNI).

Pod creation follows CRI-O's order: pin the namespace (empty file first, then the mount), run
CNI, and only then write the pod into the state file the CRI server serves (its CREATED event).
Deletion runs CNI DEL, unpins, then drops the pod from the state file.

Everything a lab makes is findable from its name alone: pods from the state file and the
pending journal, plus (when the netns dir is private) every file in it, the ifbs from the
bandwidth plugin's naming rule, the bridge from the config. So `down` works after a crash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import subprocess
import time
import uuid
from typing import Any, Sequence

from agent.lab import cri_process, kube_admin, kube_process, links, netns
from agent.lab.bandwidth import runtime_bandwidth
from agent.lab.cni import CniInvocation, CniRunner, ifb_name
from agent.lab.config import DEFAULT_NAME, LabConfig, is_within
from agent.lab.errors import LabError
from agent.lab.kube_process import ApiServerSettings
from agent.lab.runtimes import DEFAULT_RUNTIME, runtime_named
from agent.lab.spec import PodSpec
from agent.lab.state import (
    LabPod,
    LabState,
    read_pending,
    read_state,
    remove_pending,
    state_lock,
    write_pending,
    write_state,
)
from agent.model.ownership import ifb_name as podbw_ifb_name

log = logging.getLogger(__name__)


class LabNode:
    """One lab instance, driven from this process (other processes may drive it too)."""

    def __init__(self, config: LabConfig):
        self.config = config
        self._cri_proc: subprocess.Popen[bytes] | None = None
        self._api_proc: subprocess.Popen[bytes] | None = None
        self.api_settings = ApiServerSettings()
        self._pod_procs: list[subprocess.Popen[Any]] = []

    @classmethod
    def attach(cls, name: str = DEFAULT_NAME) -> LabNode:
        """The node of a lab that may already be up (netns dir read from its state file)."""
        return cls(LabConfig.existing(name))

    # ---- life cycle -------------------------------------------------------------------------

    def up(
        self,
        pods: Sequence[PodSpec] = (),
        pod_events: bool = True,
        cni_bandwidth: bool = False,
        start_cri: bool = True,
        runtime: str = DEFAULT_RUNTIME,
        start_api: bool = True,
    ) -> list[LabPod]:
        """Create the lab with these pods; on any failure the half-made lab is torn down."""
        runtime_named(runtime)  # refuse an unknown runtime before making anything
        if read_state(self.config) is not None:
            raise LabError(f"lab {self.config.name!r} is already up (run `podbw lab down --name {self.config.name}`)")
        self._check_subnet_free()
        os.makedirs(self.config.state_dir, mode=0o755, exist_ok=True)
        try:
            with state_lock(self.config):
                netns.ensure_netns_dir(self.config.netns_dir)
                write_state(self.config, LabState.new(self.config, pod_events, cni_bandwidth, runtime))
            # The runtime is up before its pods, as on a node: each pod is then a CREATED event.
            if start_cri:
                self.start_cri_server()
            if start_api:
                self.start_api_server()
            return [self.add(spec) for spec in pods]
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            raise

    def add(self, spec: PodSpec) -> LabPod:
        with state_lock(self.config):
            state = self._require_state()
            if any(p.key == spec.key for p in state.pods):
                raise LabError(f"pod {spec.key} already exists in lab {self.config.name!r}")
            pod = self._create_pod(spec, state)
            state.pods.append(pod)
            write_state(self.config, state)
            remove_pending(self.config, pod.sandbox_id)
        kube_process.wait_synced(self.config)  # the pod is in the API stand-in too when add returns
        log.debug("lab %s: added %s (%s) ip=%s veth=%s", self.config.name, pod.key, pod.sandbox_id[:12], pod.ip, pod.host_veth)
        return pod

    def delete(self, ref: str) -> LabPod:
        """Delete a pod by namespace/name or sandbox id (or a unique id prefix)."""
        with state_lock(self.config):
            state = self._require_state()
            pod = state.find(ref)
            self._kill_pod_processes([pod])
            self._destroy_pod(pod, state.cni_bandwidth)
            state.pods = [p for p in state.pods if p.sandbox_id != pod.sandbox_id]
            write_state(self.config, state)
        kube_process.wait_synced(self.config)
        log.debug("lab %s: deleted %s", self.config.name, pod.key)
        return pod

    def pods(self) -> list[LabPod]:
        state = read_state(self.config)
        return list(state.pods) if state else []

    def state(self) -> LabState | None:
        return read_state(self.config)

    def is_up(self) -> bool:
        return read_state(self.config) is not None

    def down(self) -> None:
        """Remove everything this lab made; safe to repeat, after a crash, or with no lab."""
        self.stop_api_server()
        self.stop_cri_server()
        self._reap_pod_procs(kill=True)
        state = self._read_state_lenient()
        netns_dir = state.netns_dir if state else self.config.netns_dir
        cni_bandwidth = state.cni_bandwidth if state else True
        if os.path.isdir(self.config.state_dir):
            with state_lock(self.config):
                self._down_pods(state, netns_dir, cni_bandwidth)
                netns.umount_tree(self.config.state_dir)
                shutil.rmtree(self.config.state_dir, ignore_errors=True)
        links.delete_link(self.config.bridge)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.config.socket)
        log.debug("lab %s: down", self.config.name)

    # ---- CRI server -------------------------------------------------------------------------

    def start_cri_server(self) -> None:
        state = self._require_state()
        self._cri_proc = cri_process.start(self.config, state.pod_events, state.runtime)

    def stop_cri_server(self) -> bool:
        stopped = cri_process.stop(self.config, self._cri_proc)
        self._cri_proc = None
        return stopped

    def restart_cri_server(self) -> None:
        self.stop_cri_server()
        self.start_cri_server()

    def cri_server_pid(self) -> int | None:
        return cri_process.running_pid(self.config)

    # ---- Kubernetes API server --------------------------------------------------------------

    @property
    def node_name(self) -> str:
        return self.config.node_name

    @property
    def kubeconfig(self) -> str:
        """`<state_dir>/kubeconfig`: the API stand-in's address, CA and token (written by start)."""
        return self.config.kubeconfig

    def start_api_server(self, settings: ApiServerSettings | None = None) -> None:
        """Start the API stand-in; settings given here are kept for later restarts."""
        self._require_state()
        if settings is not None:
            self.api_settings = settings
        self._api_proc = kube_process.start(self.config, self.api_settings)

    def stop_api_server(self) -> bool:
        stopped = kube_process.stop(self.config, self._api_proc)
        self._api_proc = None
        return stopped

    def restart_api_server(self) -> None:
        """Stop and start again on the same port, with the same credentials and stored objects."""
        self.stop_api_server()
        self.start_api_server()

    def api_server_pid(self) -> int | None:
        return kube_process.running_pid(self.config)

    def api_server_url(self) -> str | None:
        return kube_process.server_url(self.config)

    def compact_api_history(self) -> int:
        """Make every resourceVersion handed out so far too old (a watch from one gets 410), as
        an etcd compaction does; returns the new resourceVersion, the only one still valid."""
        return int(kube_admin.admin_call(self.config, "POST", "/podbw-lab/compact")["resourceVersion"])

    def close_api_watches(self) -> None:
        """End every open watch stream (clients then resume from their last resourceVersion)."""
        kube_admin.admin_call(self.config, "POST", "/podbw-lab/close-watches")

    def api_request_counts(self) -> dict[str, int]:
        """Requests served since the server started, e.g. {"list pods": 1, "watch pods": 3, "error 410": 1}."""
        return dict(kube_admin.admin_call(self.config, "GET", "/podbw-lab/requests"))

    # ---- running things in pods -------------------------------------------------------------

    def run_in_pod(self, pod: LabPod, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start argv inside the pod's network namespace; `down` kills it if still running."""
        proc = subprocess.Popen(["nsenter", f"--net={pod.netns_path}", "--", *argv], **popen_kwargs)
        self._pod_procs.append(proc)
        return proc

    def exec_in_pod(self, pod: LabPod, argv: Sequence[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                ["nsenter", f"--net={pod.netns_path}", "--", *argv],
                capture_output=True, text=True, timeout=timeout, check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise LabError(f"{' '.join(argv)} in pod {pod.key}: no exit in {timeout:g} s") from e

    # ---- internals --------------------------------------------------------------------------

    def _require_state(self) -> LabState:
        state = read_state(self.config)
        if state is None:
            raise LabError(f"lab {self.config.name!r} is not up (run `podbw lab up --name {self.config.name}`)")
        return state

    def _read_state_lenient(self) -> LabState | None:
        try:
            return read_state(self.config)
        except LabError as e:
            log.warning("%s; cleaning up from what exists", e)
            return None

    def _check_subnet_free(self) -> None:
        taken = [(i, a) for i, a in links.addresses_in(self.config.subnet) if i != self.config.bridge]
        if taken:
            ifname, addr = taken[0]
            raise LabError(
                f"subnet {self.config.subnet} of lab {self.config.name!r} is in use on this host "
                f"({ifname} has {addr}); pick another lab name"
            )

    def _create_pod(self, spec: PodSpec, state: LabState) -> LabPod:
        runtime, cni_bandwidth = runtime_named(state.runtime), state.cni_bandwidth
        sandbox_id = secrets.token_hex(32)
        pinned = not spec.host_network or runtime.pins_host_network
        pod = LabPod(
            sandbox_id=sandbox_id,
            uid=str(uuid.uuid4()),
            namespace=spec.namespace,
            name=spec.name,
            netns_path=os.path.join(self.config.netns_dir, runtime.pin_name()) if pinned else "",
            host_network=spec.host_network,
            annotations=dict(spec.annotations),
            # kubelet adds these to every sandbox's labels.
            labels={
                **dict(spec.labels),
                "io.kubernetes.pod.name": spec.name,
                "io.kubernetes.pod.namespace": spec.namespace,
            },
            created_at_ns=time.time_ns(),
        )
        pod.labels["io.kubernetes.pod.uid"] = pod.uid
        write_pending(self.config, pod)
        try:
            if spec.host_network:
                # CRI-O pins the host's own namespace, containerd makes no pin; neither runs CNI.
                if pinned:
                    netns.create_pin_file(pod.netns_path)
                    netns.pin_host_netns(pod.netns_path)
                return pod
            netns.create_pin_file(pod.netns_path)
            netns.pin_new_netns(pod.netns_path)
            bandwidth = runtime_bandwidth(pod.annotations, pod.key) if cni_bandwidth else None
            result = self._cni(cni_bandwidth).add(self._invocation(pod), bandwidth)
        except BaseException:
            with contextlib.suppress(Exception):
                self._destroy_pod(pod, cni_bandwidth)
            remove_pending(self.config, pod.sandbox_id)
            raise
        pod.ip, pod.host_veth = result.ip, result.host_veth
        return pod

    def _destroy_pod(self, pod: LabPod, cni_bandwidth: bool) -> None:
        if not pod.host_network:
            self._cni(cni_bandwidth).delete(self._invocation(pod))
            links.delete_link(ifb_name(self.config.network_name, pod.sandbox_id))
        if pod.netns_path:
            netns.unpin(pod.netns_path)

    def _down_pods(self, state: LabState | None, netns_dir: str, cni_bandwidth: bool) -> None:
        known: dict[str, LabPod] = {}
        for pod in [*(state.pods if state else []), *read_pending(self.config)]:
            known.setdefault(pod.sandbox_id, pod)
        # Pins in a shared netns dir are ours only when recorded; in a private one, all are.
        pins = {p.netns_path for p in known.values() if p.netns_path and is_within(p.netns_path, netns_dir)}
        if is_within(netns_dir, self.config.state_dir) and os.path.isdir(netns_dir):
            pins |= {os.path.join(netns_dir, f) for f in os.listdir(netns_dir)}
        host_inode = os.stat("/proc/self/ns/net").st_ino
        inodes = {i for i in (netns.netns_inode(p) for p in pins) if i is not None and i != host_inode}
        netns.kill_processes_in(inodes)
        for pod in known.values():
            try:
                self._destroy_pod(pod, cni_bandwidth)
            except LabError as e:
                log.warning("lab %s: %s", self.config.name, e)
            # An agent in egress mode `ifb` leaves its ifbs in place when it stops (limits
            # stay), and no agent may be left to collect them: the lab takes its pods' along.
            links.delete_link(podbw_ifb_name(pod.sandbox_id))
            remove_pending(self.config, pod.sandbox_id)
        for path in pins:
            try:
                netns.unpin(path)
            except LabError as e:
                log.warning("lab %s: %s", self.config.name, e)

    def _kill_pod_processes(self, pods: Sequence[LabPod]) -> None:
        host_inode = os.stat("/proc/self/ns/net").st_ino
        inodes = {i for i in (netns.netns_inode(p.netns_path) for p in pods) if i is not None and i != host_inode}
        if netns.kill_processes_in(inodes):
            self._reap_pod_procs(kill=False)

    def _reap_pod_procs(self, kill: bool) -> None:
        """Forget processes that ended; with kill, end the rest first (Popen warns otherwise)."""
        still = []
        for proc in self._pod_procs:
            if kill and proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2.0)
            if proc.poll() is None:
                still.append(proc)
        self._pod_procs = still

    def _cni(self, cni_bandwidth: bool) -> CniRunner:
        return CniRunner(self.config, cni_bandwidth)

    def _invocation(self, pod: LabPod) -> CniInvocation:
        return CniInvocation(
            container_id=pod.sandbox_id,
            netns_path=pod.netns_path,
            pod_namespace=pod.namespace,
            pod_name=pod.name,
            pod_uid=pod.uid,
        )
