"""Throwaway certificates for the TLS tests, made with the openssl CLI: a CA, server
certificates for 127.0.0.1 and client certificates signed by it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SERVER_EXT = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
CLIENT_EXT = "extendedKeyUsage=clientAuth\n"


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(cwd: Path, name: str = "ca", subject: str = "/CN=podbw test CA") -> None:
    """{name}.crt and {name}.key: a self-signed CA."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", subject,
             "-days", "2", cwd=cwd)


def issue(cwd: Path, name: str, subject: str, ext: str, ca: str = "ca") -> None:
    """{name}.crt and {name}.key, signed by the CA {ca}.crt / {ca}.key."""
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=cwd)
    (cwd / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext",
             cwd=cwd)


def make_pki(cwd: Path) -> Path:
    """In cwd: ca, server (for 127.0.0.1), server2 (the same name, another key: a rotation),
    client (signed by ca), and a stranger CA with a client it signed."""
    make_ca(cwd)
    issue(cwd, "server", "/CN=127.0.0.1", SERVER_EXT)
    issue(cwd, "server2", "/CN=127.0.0.1 rotated", SERVER_EXT)
    issue(cwd, "client", "/CN=prometheus", CLIENT_EXT)
    make_ca(cwd, "stranger-ca", "/CN=someone else's CA")
    issue(cwd, "stranger", "/CN=intruder", CLIENT_EXT, ca="stranger-ca")
    return cwd
