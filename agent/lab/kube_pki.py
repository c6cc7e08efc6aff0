"""The API stand-in's credentials, made once per lab in its state dir: a self-signed CA, a server
certificate for 127.0.0.1 signed by it (made with the openssl CLI), a bearer token, and a
kubeconfig naming all three, so clients go through TLS verification and token auth as they
would against a cluster.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import tempfile
from dataclasses import dataclass

import yaml

from agent.lab import process

CERT_DAYS = 3650
_CA_CONFIG = """\
[req]
distinguished_name = dn
x509_extensions = ca_ext
prompt = no
[dn]
CN = {common_name}
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""
_SERVER_EXTENSIONS = """\
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class KubePki:
    directory: str

    @property
    def ca_cert(self) -> str:
        return os.path.join(self.directory, "ca.crt")

    @property
    def ca_key(self) -> str:
        return os.path.join(self.directory, "ca.key")

    @property
    def server_cert(self) -> str:
        return os.path.join(self.directory, "server.crt")

    @property
    def server_key(self) -> str:
        return os.path.join(self.directory, "server.key")

    @property
    def token_file(self) -> str:
        return os.path.join(self.directory, "token")

    def complete(self) -> bool:
        return all(os.path.exists(p) for p in (self.ca_cert, self.server_cert, self.server_key, self.token_file))

    def token(self) -> str:
        with open(self.token_file, encoding="ascii") as f:
            return f.read().strip()


def ensure_pki(directory: str, ca_name: str) -> KubePki:
    """The credentials in directory, made now if any part is missing (kept across restarts)."""
    pki = KubePki(directory)
    if pki.complete():
        return pki
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".pki-") as work:
        config = os.path.join(work, "ca.cnf")
        extensions = os.path.join(work, "server.ext")
        csr = os.path.join(work, "server.csr")
        with open(config, "w", encoding="ascii") as f:
            f.write(_CA_CONFIG.format(common_name=ca_name))
        with open(extensions, "w", encoding="ascii") as f:
            f.write(_SERVER_EXTENSIONS)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        process.run(["openssl", "req", "-x509", *ec, "-config", config, "-keyout", pki.ca_key, "-out", pki.ca_cert,
                     "-days", str(CERT_DAYS)])
        process.run(["openssl", "req", "-new", *ec, "-subj", "/CN=kube-apiserver", "-keyout", pki.server_key, "-out", csr])
        process.run(["openssl", "x509", "-req", "-in", csr, "-CA", pki.ca_cert, "-CAkey", pki.ca_key,
                     "-set_serial", "0x" + secrets.token_hex(16), "-days", str(CERT_DAYS), "-extfile", extensions,
                     "-out", pki.server_cert])
    _write_private(pki.token_file, secrets.token_urlsafe(32) + "\n")
    for path in (pki.ca_key, pki.server_key):
        os.chmod(path, 0o600)
    return pki


def _write_private(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def kubeconfig(server_url: str, ca_pem: bytes, token: str, name: str, namespace: str = "default") -> dict[str, object]:
    """A kubeconfig with one cluster, user and context, all called name."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {
            "server": server_url,
            "certificate-authority-data": base64.b64encode(ca_pem).decode("ascii"),
        }}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}],
        "current-context": name,
        "preferences": {},
    }


def write_kubeconfig(path: str, server_url: str, pki: KubePki, name: str) -> None:
    with open(pki.ca_cert, "rb") as f:
        ca_pem = f.read()
    _write_private(path, yaml.safe_dump(kubeconfig(server_url, ca_pem, pki.token(), name), sort_keys=False))
