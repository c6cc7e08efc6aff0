"""`podbw lab up|add|delete|status|down`: the node simulator from the shell."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Callable

from agent.lab.config import DEFAULT_NAME, LabConfig, lab_names
from agent.lab.errors import LabError
from agent.lab.runtimes import DEFAULT_RUNTIME, RUNTIMES

if TYPE_CHECKING:
    from agent.lab.spec import PodSpec

# The node, spec and CRI process modules (CNI, YAML, netns, subprocess handling) are imported by
# the commands that use them: every `podbw` invocation, `podbw run` included, builds this parser.


def add_lab_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    lab = subparsers.add_parser(
        "lab", help="CRI-O- or containerd-like node simulator (pods, CNI, CRI socket)",
        description="A CRI-O- or containerd-like node on this machine: pinned pod namespaces wired "
        "by the real CNI bridge plugin, a CRI server on a unix socket and a Kubernetes API stand-in "
        "(HTTPS on 127.0.0.1, kubeconfig in the lab's state dir). Needs root.",
    )
    sub = lab.add_subparsers(dest="lab_command", required=True, metavar="SUBCOMMAND")

    up = sub.add_parser("up", help="create a lab with pods and start its CRI and Kubernetes API servers")
    _name_option(up)
    up.add_argument("--pods", type=int, default=0, metavar="N", help="generic pods pod-0..pod-N-1 in namespace 'lab'")
    up.add_argument("--spec", metavar="FILE", help="YAML file listing pods (added before --pods ones)")
    up.add_argument("--netns-dir", metavar="DIR", help="where to pin namespaces (default /var/run/netns)")
    up.add_argument(
        "--pod-events", action=argparse.BooleanOptionalAction, default=True,
        help="serve GetContainerEvents like CRI-O with enable_pod_events=true (default: on)",
    )
    up.add_argument("--cni-bandwidth", action="store_true", help="chain the CNI bandwidth plugin, fed from pod annotations")
    up.add_argument(
        "--runtime", choices=list(RUNTIMES), default=DEFAULT_RUNTIME,
        help="runtime the CRI server answers as: Version, verbose sandbox info, pin names (default: %(default)s)",
    )
    up.set_defaults(func=_guarded(_cmd_up))

    add = sub.add_parser("add", help="add one pod to a running lab")
    add.add_argument("pod", metavar="NAMESPACE/NAME")
    add.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE", help="pod annotation (repeatable)")
    add.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="pod label (repeatable)")
    add.add_argument("--host-network", action="store_true", help="hostNetwork pod: pinned to the host namespace, no CNI")
    _name_option(add)
    add.set_defaults(func=_guarded(_cmd_add))

    delete = sub.add_parser("delete", help="delete one pod")
    delete.add_argument("pod", metavar="NAMESPACE/NAME|SANDBOX_ID")
    _name_option(delete)
    delete.set_defaults(func=_guarded(_cmd_delete))

    status = sub.add_parser("status", help="list the lab's pods")
    _name_option(status)
    status.set_defaults(func=_guarded(_cmd_status))

    down = sub.add_parser("down", help="stop the lab's servers and remove every pod, link and file of the lab")
    _name_option(down)
    down.add_argument("--all", action="store_true", help="every lab under /run/podbw-lab")
    down.set_defaults(func=_guarded(_cmd_down))
    return lab


def _name_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name", default=os.environ.get("PODBW_LAB_NAME", DEFAULT_NAME),
        help="lab instance name (env PODBW_LAB_NAME; default %(default)s)",
    )


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Expected failures become one line on stderr and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            if os.geteuid() != 0:
                raise LabError("needs root (network namespaces, mounts, CNI)")
            return command(args)
        except LabError as e:
            print(f"podbw lab {args.lab_command}: {e}", file=sys.stderr)
            return 1
        except OSError as e:
            print(f"podbw lab {args.lab_command}: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
            return 1

    return run


def _cmd_up(args: argparse.Namespace) -> int:
    from agent.lab import cri_process
    from agent.lab.agent_process import lab_agent_args
    from agent.lab.node import LabNode
    from agent.lab.spec import generic_pods, load_spec

    specs: list[PodSpec] = load_spec(args.spec) if args.spec else []
    specs += generic_pods(args.pods)
    node = LabNode(LabConfig.for_name(args.name, netns_dir=args.netns_dir))
    start_cri = cri_process.cri_server_available()
    if not start_cri:
        print(f"podbw lab up: warning: {cri_process.CRI_SERVER_MODULE} is missing; no CRI socket", file=sys.stderr)
    pods = node.up(specs, pod_events=args.pod_events, cni_bandwidth=args.cni_bandwidth, start_cri=start_cri,
                   runtime=args.runtime)
    cfg = node.config
    print(
        f"lab {cfg.name} up as {args.runtime}: {len(pods)} pods, bridge {cfg.bridge}, subnet {cfg.subnet}, "
        f"netns {cfg.netns_dir}, socket {cfg.socket if start_cri else '(none)'}"
    )
    print(f"Kubernetes API stand-in {node.api_server_url()}, node {cfg.node_name}: kubectl --kubeconfig {cfg.kubeconfig}")
    print(f"an agent for it: podbw run {' '.join(lab_agent_args(cfg))}")
    return 0


def _parse_pairs(pairs: list[str], what: str) -> dict[str, str]:
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise LabError(f"--{what} {pair!r}: expected KEY=VALUE")
        result[key] = value
    return result


def _cmd_add(args: argparse.Namespace) -> int:
    from agent.lab.node import LabNode
    from agent.lab.spec import PodSpec

    namespace, sep, name = args.pod.rpartition("/")
    spec = PodSpec(
        name=name,
        namespace=namespace if sep else "default",
        annotations=_parse_pairs(args.annotation, "annotation"),
        labels=_parse_pairs(args.label, "label"),
        host_network=args.host_network,
    )
    pod = LabNode.attach(args.name).add(spec)
    print(f"{pod.key} sandbox={pod.sandbox_id} ip={pod.ip or '-'} veth={pod.host_veth or '-'} netns={pod.netns_path}")
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    from agent.lab.node import LabNode

    pod = LabNode.attach(args.name).delete(args.pod)
    print(f"deleted {pod.key} ({pod.sandbox_id[:13]})")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from agent.lab.node import LabNode

    node = LabNode.attach(args.name)
    state = node.state()
    if state is None:
        raise LabError(f"lab {args.name!r} is not up")
    pid = node.cri_server_pid()
    api_pid = node.api_server_pid()
    print(
        f"lab {state.name} ({state.runtime}): bridge {state.bridge}, subnet {state.subnet}, netns {state.netns_dir}, "
        f"CRI {state.socket} ({f'pid {pid}' if pid else 'not running'}), "
        f"pod events {'on' if state.pod_events else 'off'}, cni bandwidth {'on' if state.cni_bandwidth else 'off'}"
    )
    print(
        f"Kubernetes API {node.api_server_url() or '-'} ({f'pid {api_pid}' if api_pid else 'not running'}), "
        f"node {node.node_name}, kubeconfig {node.kubeconfig}"
    )
    rows = [("POD", "IP", "HOST VETH", "NETNS")]
    for pod in state.pods:
        rows.append((pod.key, pod.ip or "(host)", pod.host_veth or "-", pod.netns_path))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    from agent.lab.node import LabNode

    names = lab_names() if args.all else [args.name]
    for name in names:
        LabNode.attach(name).down()
        print(f"lab {name} down")
    if args.all and not names:
        print("no labs")
    return 0
