"""Where the API is and who podbw is to it: kubeconfig or in-cluster, the token re-read when the
kubelet rotates it, and `--kubernetes auto` decided from what is mounted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.discovery.settings import DiscoverySettings, resolve_kubernetes
from agent.kube.config import TokenFile, in_cluster, load_config
from agent.kube.errors import KubeConfigError
from tests.unit.kube_api_server import kubeconfig

ENV = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def service_account(root: Path, token: str = "token-1") -> Path:
    """A ServiceAccount volume as the kubelet projects it: files are symlinks into `..data`,
    itself a symlink to a timestamped directory that a rotation swaps atomically."""
    sa = root / "serviceaccount"
    sa.mkdir()
    rotate(sa, token, "..2026_12_01_10_00_00.000000001")
    for name in ("token", "ca.crt", "namespace"):
        (sa / name).symlink_to(f"..data/{name}")
    return sa


def rotate(sa: Path, token: str, generation: str) -> None:
    data = sa / generation
    data.mkdir()
    (data / "token").write_text(token)
    (data / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (data / "namespace").write_text("kube-system")
    tmp = sa / "..data_tmp"
    tmp.symlink_to(generation)
    os.replace(tmp, sa / "..data")


def test_kubeconfig_current_context(tmp_path: Path) -> None:
    api = load_config(str(kubeconfig(tmp_path / "kc", "https://192.0.2.1:6443")))
    assert api.server == "https://192.0.2.1:6443"
    assert api.token_file is None and api.config.user.token == "test-token"
    assert api.where == f"kubeconfig {tmp_path / 'kc'}"


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "not found"),
        ("clusters: [\n", "kubeconfig"),
        ("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n", "No current context"),
        ("current-context: x\ncontexts: []\n", "kubeconfig"),
    ],
    ids=["missing", "not YAML", "no current context", "unknown context"],
)
def test_a_bad_kubeconfig_is_one_line_error(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "kc"
    if text is not None:
        path.write_text(text)
    with pytest.raises(KubeConfigError) as raised:
        load_config(str(path))
    assert message in str(raised.value) and str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_in_cluster_config(tmp_path: Path) -> None:
    sa = service_account(tmp_path)
    api = load_config(None, str(sa), ENV)
    assert api.server == "https://10.96.0.1:443"
    assert api.token_file == str(sa / "token")
    assert api.config.cluster.certificate_auth == str(sa / "ca.crt")
    assert api.config.user is not None and api.config.user.token is None  # the transport sets it, fresh
    assert api.where == f"ServiceAccount in {sa}"


def test_in_cluster_ipv6_host_is_bracketed(tmp_path: Path) -> None:
    sa = service_account(tmp_path)
    env = {"KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert load_config(None, str(sa), env).server == "https://[fd00:10:96::1]:443"


@pytest.mark.parametrize(
    "env, remove, message",
    [
        ({}, None, "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set"),
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, None, "must be set"),
        (ENV, "token", "token is missing"),
        (ENV, "ca.crt", "ca.crt is missing"),
    ],
)
def test_in_cluster_config_errors(tmp_path: Path, env: dict, remove: str | None, message: str) -> None:
    sa = service_account(tmp_path)
    if remove:
        (sa / remove).unlink()
    with pytest.raises(KubeConfigError, match=message):
        load_config(None, str(sa), env)


def test_in_cluster_needs_the_token_and_the_variable(tmp_path: Path) -> None:
    sa = service_account(tmp_path)
    assert in_cluster(str(sa), ENV)
    assert not in_cluster(str(sa), {})
    assert not in_cluster(str(tmp_path / "nowhere"), ENV)


def test_token_is_read_again_when_the_kubelet_rotates_it(tmp_path: Path) -> None:
    sa = service_account(tmp_path, "token-1\n")
    token = TokenFile(str(sa / "token"))
    assert token.bearer() == "Bearer token-1"
    assert token.bearer() == "Bearer token-1"
    rotate(sa, "token-2", "..2026_12_01_10_48_00.000000002")
    assert token.bearer() == "Bearer token-2"


def test_token_keeps_the_last_one_while_the_file_is_briefly_missing(tmp_path: Path) -> None:
    sa = service_account(tmp_path)
    token = TokenFile(str(sa / "token"))
    assert token.bearer() == "Bearer token-1"
    os.unlink(sa / "..data")
    assert token.bearer() == "Bearer token-1"
    rotate(sa, "token-3", "..later")
    assert token.bearer() == "Bearer token-3"


@pytest.mark.parametrize("content", [None, "", "x" * 70_000, b"\xff\xfe"], ids=["missing", "empty", "huge", "binary"])
def test_token_that_cannot_be_read_is_a_config_error(tmp_path: Path, content) -> None:
    path = tmp_path / "token"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(KubeConfigError, match=f"token {path}"):
        TokenFile(str(path)).bearer()


# (kubernetes, kubeconfig given, token mounted, node name, expected mode or error text)
AUTO = [
    ("auto", False, False, None, "off"),
    ("auto", False, True, "node-a", "on"),
    ("auto", True, False, "node-a", "on"),
    ("auto", False, True, None, "a ServiceAccount token is mounted in"),
    ("auto", True, False, None, "is given, so --node-name"),
    ("on", False, False, "node-a", "on"),
    ("on", False, False, None, "--kubernetes is on, so --node-name (PODBW_NODE_NAME) is needed"),
    ("off", True, True, None, "off"),
]


@pytest.mark.parametrize("mode, given, mounted, node, expected", AUTO)
def test_resolve_kubernetes(tmp_path: Path, mode: str, given: bool, mounted: bool, node: str | None, expected: str) -> None:
    sa = service_account(tmp_path) if mounted else tmp_path / "none"
    settings = DiscoverySettings(
        kubernetes=mode, node_name=node, kubeconfig=str(tmp_path / "kc") if given else None,
        service_account_dir=str(sa),
    )
    if expected in ("on", "off"):
        assert resolve_kubernetes(settings, ENV).kubernetes == expected
    else:
        with pytest.raises(ValueError, match="needed to watch this node's pods; or pass --kubernetes off") as raised:
            resolve_kubernetes(settings, ENV)
        assert expected in str(raised.value)
