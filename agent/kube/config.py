"""Where the API server is and who podbw is to it: in the cluster, the ServiceAccount's files and
KUBERNETES_SERVICE_HOST/PORT (as client-go's rest.InClusterConfig); outside, a kubeconfig's
current context. The ServiceAccount directory and the environment are arguments, for tests."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from agent.kube.errors import KubeConfigError, one_line

if TYPE_CHECKING:
    from lightkube.config.kubeconfig import SingleConfig

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_FILE = "token"
CA_FILE = "ca.crt"
MAX_TOKEN_BYTES = 64 * 1024
"""A projected token is ~1 KB; anything far larger is not one."""


def in_cluster(service_account_dir: str = SERVICE_ACCOUNT_DIR, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process runs in a pod with a ServiceAccount token mounted."""
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and os.path.isfile(
        os.path.join(service_account_dir, TOKEN_FILE)
    )


@dataclass(frozen=True)
class ApiConfig:
    config: SingleConfig
    """lightkube's view of the server, its CA and the user (no token when token_file is set)."""
    token_file: str | None = None
    """The ServiceAccount token: read again whenever the kubelet has rotated it."""
    where: str = ""
    """For log lines: `ServiceAccount in DIR` or `kubeconfig PATH`."""

    @property
    def server(self) -> str:
        return self.config.cluster.server


def load_config(
    kubeconfig: str | None,
    service_account_dir: str = SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] = os.environ,
) -> ApiConfig:
    """The kubeconfig's current context when `kubeconfig` is given, else the in-cluster config.
    Raises KubeConfigError (one line) when the files or variables are missing or malformed."""
    from lightkube import KubeConfig

    if kubeconfig:
        try:
            config = KubeConfig.from_file(kubeconfig).get()
        except Exception as err:  # anything a hand-written file can make YAML, msgspec or lightkube raise
            raise KubeConfigError(one_line(f"kubeconfig {kubeconfig}: {err or type(err).__name__}")) from None
        assert config is not None  # get() raises when there is no context
        return ApiConfig(config, None, f"kubeconfig {kubeconfig}")
    return _in_cluster_config(service_account_dir, environ)


def _in_cluster_config(service_account_dir: str, environ: Mapping[str, str]) -> ApiConfig:
    from lightkube import KubeConfig
    from lightkube.config.models import Cluster, User

    host, port = environ.get("KUBERNETES_SERVICE_HOST", ""), environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeConfigError(
            "not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set (or give --kubeconfig)"
        )
    token_file = os.path.join(service_account_dir, TOKEN_FILE)
    ca_file = os.path.join(service_account_dir, CA_FILE)
    for path in (token_file, ca_file):
        if not os.path.isfile(path):
            raise KubeConfigError(f"in-cluster config: {path} is missing (is a ServiceAccount token mounted?)")
    if ":" in host:
        host = f"[{host}]"  # IPv6
    config = KubeConfig.from_one(
        cluster=Cluster(server=f"https://{host}:{port}", certificate_auth=ca_file), user=User()
    ).get()
    return ApiConfig(config, token_file, f"ServiceAccount in {service_account_dir}")


FileIdentity = tuple[int, int, int, int]


class TokenFile:
    """A bearer token file, read again when it changed (the kubelet rotates projected tokens,
    swapping the `..data` symlink): one stat() per request otherwise. Thread-safe."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._identity: FileIdentity | None = None
        self._token = ""

    def bearer(self) -> str:
        """`Bearer <token>`; KubeConfigError when the file cannot be read and none was read before."""
        with self._lock:
            try:
                st = os.stat(self.path)
                identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                if identity != self._identity:
                    with open(self.path, "rb") as handle:
                        token = handle.read(MAX_TOKEN_BYTES + 1).decode("ascii").strip()
                    if not token or len(token) > MAX_TOKEN_BYTES:
                        raise ValueError(f"{len(token)} bytes is no token")
                    self._token, self._identity = token, identity
            except (OSError, ValueError) as err:
                if not self._token:
                    raise KubeConfigError(one_line(f"token {self.path}: {err}")) from None
                # Mid-rotation: the previous token is still valid for a while.
            return f"Bearer {self._token}"
