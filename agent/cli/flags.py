"""Flags shared by subcommands; every flag has a PODBW_* environment equivalent."""

from __future__ import annotations

import argparse
import os


def env_name(flag: str) -> str:
    """`--cri-endpoint` -> `PODBW_CRI_ENDPOINT`, `--web.listen-address` -> `PODBW_WEB_LISTEN_ADDRESS`."""
    return "PODBW_" + flag.lstrip("-").replace("-", "_").replace(".", "_").upper()


def add_flag(parser: argparse.ArgumentParser, flag: str, default: object, help: str, **kwargs: object) -> None:
    env = env_name(flag)
    value = os.environ.get(env)
    if value is not None and kwargs.get("action") == "store_true":
        default = value.lower() in ("1", "true", "yes", "on")
    elif value is not None:
        default = value
    parser.add_argument(flag, default=default, help=f"{help} (env {env})", **kwargs)


def add_discovery_flags(parser: argparse.ArgumentParser) -> None:
    add_flag(
        parser,
        "--cri-endpoint",
        "auto",
        "CRI runtime socket; 'auto' takes the first that exists of "
        + ", ".join(AUTO_CRI_ENDPOINTS)
        + "; 'none' uses the netns directory alone",
    )
    add_flag(parser, "--netns-dir", "/var/run/netns", "directory where the runtime pins pod network namespaces")
    add_flag(parser, "--cri-timeout", 2.0, "deadline of each CRI call in seconds", type=float)


AUTO_CRI_ENDPOINTS = (
    "unix:///var/run/crio/crio.sock",
    "unix:///run/containerd/containerd.sock",
    "unix:///run/podbw-lab/crio.sock",
)
"""Like crictl, try the usual sockets: CRI-O's, containerd's, then the default `podbw lab`'s."""


def cri_endpoint(value: str) -> str | None:
    if value in ("", "none"):
        return None
    if value != "auto":
        return value
    for endpoint in AUTO_CRI_ENDPOINTS:
        if os.path.exists(endpoint[len("unix://") :]):
            return endpoint
    # Nothing yet: watch CRI-O's path; discovery uses the netns directory until it appears.
    return AUTO_CRI_ENDPOINTS[0]
