"""The exporter-toolkit web config: the parser (every error), TLS contexts, and reloading."""

from __future__ import annotations

import os
import shutil
import ssl
from pathlib import Path

import pytest

from agent.service.web_config import (
    TlsServerConfig,
    WebConfig,
    WebConfigError,
    parse_web_config,
    read_web_config,
    tls_context,
)
from agent.service.web_config_source import CHECK_INTERVAL_S, WebConfigSource

HASH = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG"  # exporter-toolkit's doc example
BASE = "/etc/podbw"


def parse(text: str) -> WebConfig:
    return parse_web_config(text, BASE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", WebConfig()),
        ("{}", WebConfig()),
        ("tls_server_config: {}\nhttp_server_config:\nbasic_auth_users:\n", WebConfig()),
        (
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: /abs/tls.key\n",
            WebConfig(tls=TlsServerConfig(cert_file=f"{BASE}/tls.crt", key_file="/abs/tls.key")),
        ),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: ca\n"
            "  client_auth_type: RequireAndVerifyClientCert\n  min_version: TLS13\n  max_version: TLS13\n"
            "  prefer_server_cipher_suites: false\n",
            WebConfig(tls=TlsServerConfig(f"{BASE}/c", f"{BASE}/k", f"{BASE}/ca", "RequireAndVerifyClientCert",
                                          "TLS13", "TLS13", False)),
        ),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: ca\n"
            "  client_auth_type: VerifyClientCertIfGiven\n  min_version: TLS10\n",
            WebConfig(tls=TlsServerConfig(f"{BASE}/c", f"{BASE}/k", f"{BASE}/ca", "VerifyClientCertIfGiven", "TLS10")),
        ),
        (
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequestClientCert\n",
            WebConfig(tls=TlsServerConfig(f"{BASE}/c", f"{BASE}/k", None, "RequestClientCert")),
        ),
        (f"basic_auth_users:\n  alice: {HASH}\n  bob: '{HASH.replace('$2y$', '$2b$')}'\n",
         WebConfig(basic_auth_users={"alice": HASH.encode(), "bob": HASH.replace("$2y$", "$2b$").encode()})),
        (
            "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n"
            "    Strict-Transport-Security: max-age=31536000\n    X-XSS-Protection: ''\n",
            WebConfig(headers=(("X-Frame-Options", "deny"), ("Strict-Transport-Security", "max-age=31536000"))),
        ),
    ],
)
def test_parse_good_configs(text: str, expected: WebConfig) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("- a\n- b\n", r"^the file: want a mapping, got list$"),
        ("tls_server_config: [1]\n", r"^tls_server_config: want a mapping, got list$"),
        ("foo: 1\n", r"^foo: unknown key \(known: tls_server_config, http_server_config, basic_auth_users\)$"),
        ("rate_limit:\n  interval: 1s\n", r"^rate_limit: not supported by podbw$"),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n  certfile: x\n", r"^tls_server_config.certfile: unknown key"),
        ("tls_server_config:\n  cert: PEM\n", r"^tls_server_config.cert: not supported by podbw$"),
        ("tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", r"^tls_server_config.cipher_suites: not supported"),
        ("tls_server_config:\n  client_allowed_sans: [a]\n", r"^tls_server_config.client_allowed_sans: not supported"),
        ("tls_server_config:\n  key_file: k\n", r"^tls_server_config.cert_file: required for TLS$"),
        ("tls_server_config:\n  cert_file: c\n", r"^tls_server_config.key_file: required for TLS$"),
        ("tls_server_config:\n  cert_file: 5\n  key_file: k\n", r"^tls_server_config.cert_file: want a string, got int$"),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: Maybe\n",
         r"^tls_server_config.client_auth_type: unknown value 'Maybe' \(want one of NoClientCert, RequestClientCert, "
         r"VerifyClientCertIfGiven, RequireAndVerifyClientCert\)$"),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: yes\n",
         r"^tls_server_config.client_auth_type: want a string, got bool$"),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca\n",
         r"^tls_server_config.client_auth_type: RequireAnyClientCert \(any certificate, unverified\) is not supported"),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireClientCert\n",
         r"RequireClientCert \(any certificate, unverified\) is not supported"),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAndVerifyClientCert\n",
         r"^tls_server_config.client_auth_type: RequireAndVerifyClientCert needs client_ca_file$"),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: VerifyClientCertIfGiven\n",
         r"VerifyClientCertIfGiven needs client_ca_file$"),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: ca\n",
         r"^tls_server_config.client_ca_file: set, but client_auth_type is NoClientCert"),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS14\n",
         r"^tls_server_config.min_version: unknown TLS version 'TLS14' \(want one of TLS10, TLS11, TLS12, TLS13\)$"),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n  max_version: tls12\n", r"max_version: unknown TLS version 'tls12'"),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS13\n  max_version: TLS12\n",
         r"^tls_server_config.min_version: TLS13 is above max_version TLS12$"),
        ("tls_server_config:\n  cert_file: c\n  key_file: k\n  prefer_server_cipher_suites: 'yes'\n",
         r"prefer_server_cipher_suites: want true or false, got 'yes'$"),
        ("http_server_config:\n  http3: true\n", r"^http_server_config.http3: unknown key \(known: headers, http2\)$"),
        ("http_server_config:\n  http2: 1\n", r"^http_server_config.http2: want true or false, got 1$"),
        ("http_server_config:\n  headers: [a]\n", r"^http_server_config.headers: want a mapping, got list$"),
        ("http_server_config:\n  headers:\n    Set-Cookie: a=b\n",
         r"^http_server_config.headers.Set-Cookie: this header can not be configured \(allowed: "),
        ("http_server_config:\n  headers:\n    x-frame-options: deny\n", r"headers.x-frame-options: this header can not be configured"),
        ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
         r"^http_server_config.headers.X-Frame-Options: invalid value 'allow' \(want one of deny, sameorigin\)$"),
        ("http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n", r"invalid value 'sniff' \(want one of nosniff\)"),
        ("http_server_config:\n  headers:\n    Content-Security-Policy: \"a\\r\\nSet-Cookie: x\"\n",
         r"headers.Content-Security-Policy: want a one-line string"),
        ("http_server_config:\n  headers:\n    Content-Security-Policy: [a]\n", r"want a one-line string, got \['a'\]$"),
        ("basic_auth_users: [alice]\n", r"^basic_auth_users: want a mapping, got list$"),
        ("basic_auth_users:\n  alice: secret\n", r"^basic_auth_users.alice: not a bcrypt hash"),
        ("basic_auth_users:\n  alice: 12\n", r"^basic_auth_users.alice: not a bcrypt hash"),
        (f"basic_auth_users:\n  alice: '{HASH[:-1]}'\n", r"^basic_auth_users.alice: not a bcrypt hash"),
        (f"basic_auth_users:\n  alice: '{HASH.replace('$10$', '$03$')}'\n", r"^basic_auth_users.alice: not a bcrypt hash"),
        (f"basic_auth_users:\n  'a:b': {HASH}\n", r"^basic_auth_users: user name 'a:b' must be non-empty and have no ':'$"),
        (f"basic_auth_users:\n  '': {HASH}\n", r"user name '' must be non-empty"),
        (f"basic_auth_users:\n  123: {HASH}\n", r"^basic_auth_users: key 123 is not a string \(quote it\)$"),
        (f"basic_auth_users:\n  alice: {HASH}\n  alice: {HASH}\n", r"^duplicate key 'alice' \(line 3\)$"),
        ("tls_server_config: &a {}\nhttp_server_config: *a\n", r"^YAML anchors and aliases are not accepted$"),
        ("tls_server_config: [\n", r"^not valid YAML: "),
    ],
)
def test_parse_refuses(text: str, error: str) -> None:
    with pytest.raises(WebConfigError, match=error) as caught:
        parse(text)
    assert "\n" not in str(caught.value)


def test_read_names_the_file_in_every_error(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    with pytest.raises(WebConfigError, match=rf"^{path}: cannot read: No such file or directory$"):
        read_web_config(str(path))
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(WebConfigError, match=rf"^{path}: not UTF-8 text$"):
        read_web_config(str(path))
    path.write_text("x" * (1024 * 1024 + 1))
    with pytest.raises(WebConfigError, match=rf"^{path}: larger than 1048576 bytes$"):
        read_web_config(str(path))
    path.write_text("tls_server_config:\n  cert_file: c\n  key_file: k\n")
    assert read_web_config(str(path)).tls == TlsServerConfig(str(tmp_path / "c"), str(tmp_path / "k"))




# ---- TLS contexts --------------------------------------------------------------------------


def test_tls_context_follows_the_config(pki: Path) -> None:
    tls = TlsServerConfig(str(pki / "server.crt"), str(pki / "server.key"), str(pki / "ca.crt"),
                          "RequireAndVerifyClientCert", "TLS12", "TLS13")
    context = tls_context(tls)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert tls_context(TlsServerConfig(str(pki / "server.crt"), str(pki / "server.key"))).verify_mode == ssl.CERT_NONE
    optional = TlsServerConfig(str(pki / "server.crt"), str(pki / "server.key"), str(pki / "ca.crt"),
                               "VerifyClientCertIfGiven", "TLS10")
    context = tls_context(optional)
    assert context.verify_mode == ssl.CERT_OPTIONAL and context.minimum_version == ssl.TLSVersion.TLSv1


@pytest.mark.parametrize(
    ("files", "error"),
    [
        (("missing.crt", "server.key", None), r"cannot load cert_file .*missing.crt .*: No such file or directory$"),
        (("server.crt", "client.key", None), r"cannot load cert_file .*server.crt / key_file .*client.key: KEY_VALUES_MISMATCH$"),
        (("server.key", "server.key", None), r"cannot load cert_file .*server.key"),
        (("server.crt", "server.key", "missing-ca.crt"), r"cannot load client_ca_file .*missing-ca.crt: No such file"),
        (("server.crt", "server.key", "server.key"), r"cannot load client_ca_file .*server.key: "),
    ],
)
def test_tls_context_refuses_unusable_files(pki: Path, files, error: str) -> None:
    cert, key, ca = files
    tls = TlsServerConfig(str(pki / cert), str(pki / key), str(pki / ca) if ca else None,
                          "RequireAndVerifyClientCert" if ca else "NoClientCert")
    with pytest.raises(WebConfigError, match=error):
        tls_context(tls)


def test_tls_context_refuses_an_encrypted_key(pki: Path, tmp_path: Path) -> None:
    import subprocess

    subprocess.run(["openssl", "ec", "-in", str(pki / "server.key"), "-aes256", "-passout", "pass:x",
                    "-out", str(tmp_path / "enc.key")], check=True, capture_output=True)
    with pytest.raises(WebConfigError, match="encrypted"):
        tls_context(TlsServerConfig(str(pki / "server.crt"), str(tmp_path / "enc.key")))


# ---- reloading -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def tick(self) -> None:
        self.now_s += CHECK_INTERVAL_S


def served_subject(context: ssl.SSLContext | None) -> str:
    """The CN of the certificate a context serves, read back through a handshake in memory."""
    assert context is not None
    client_ctx = ssl.create_default_context()
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out)
    server = context.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    der = client.getpeercert(binary_form=True)
    assert der is not None
    import subprocess

    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture
def web_dir(tmp_path: Path, pki: Path) -> Path:
    for name in ("server.crt", "server.key", "server2.crt", "server2.key", "ca.crt"):
        shutil.copy(pki / name, tmp_path / name)
    (tmp_path / "tls.crt").write_bytes((pki / "server.crt").read_bytes())
    (tmp_path / "tls.key").write_bytes((pki / "server.key").read_bytes())
    (tmp_path / "web.yml").write_text("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n")
    return tmp_path


def source_for(web_dir: Path, clock: Clock) -> WebConfigSource:
    path = str(web_dir / "web.yml")
    return WebConfigSource(lambda: read_web_config(path), path, clock=clock)


def replace_file(path: Path, content: bytes) -> None:
    """As a Kubernetes Secret update does: a new file renamed over the old one."""
    tmp = path.with_suffix(".new")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def test_rotated_certificates_serve_the_next_connection(web_dir: Path, pki: Path) -> None:
    clock = Clock()
    source = source_for(web_dir, clock)
    assert "CN = 127.0.0.1" == served_subject(source.tls()).replace("subject=", "")
    replace_file(web_dir / "tls.crt", (pki / "server2.crt").read_bytes())
    replace_file(web_dir / "tls.key", (pki / "server2.key").read_bytes())
    assert "rotated" not in served_subject(source.tls()), "checked at most once a second"
    clock.tick()
    assert "rotated" in served_subject(source.tls())
    assert (source.reload_errors, source.last_reload_ok) == (0, True)


def test_a_bad_change_keeps_the_last_good_config_and_is_counted_once(web_dir: Path, pki: Path, caplog) -> None:
    clock = Clock()
    source = source_for(web_dir, clock)
    good = source.tls()
    (web_dir / "web.yml").write_text("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  bogus: 1\n")
    for _ in range(3):
        clock.tick()
        assert source.tls() is good
    assert (source.reload_errors, source.last_reload_ok) == (1, False)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "bogus: unknown key" in errors[0].getMessage()
    assert "keeping the last good one" in errors[0].getMessage()
    # A key that does not match the certificate: also refused, also counted.
    (web_dir / "web.yml").write_text("tls_server_config:\n  cert_file: tls.crt\n  key_file: server2.key\n")
    clock.tick()
    assert source.tls() is good and source.reload_errors == 2
    (web_dir / "web.yml").write_text("tls_server_config:\n  cert_file: server2.crt\n  key_file: server2.key\n")
    clock.tick()
    assert source.tls() is not good and "rotated" in served_subject(source.tls())
    assert (source.reload_errors, source.last_reload_ok) == (2, True)


def test_switching_between_http_and_https_needs_a_restart(web_dir: Path) -> None:
    clock = Clock()
    source = source_for(web_dir, clock)
    (web_dir / "web.yml").write_text("{}\n")
    clock.tick()
    assert source.tls() is not None and source.uses_tls
    assert source.reload_errors == 1


def test_a_missing_file_at_start_fails_and_later_keeps_the_last_good(web_dir: Path) -> None:
    clock = Clock()
    (web_dir / "tls.key").rename(web_dir / "gone.key")
    with pytest.raises(WebConfigError, match="tls.key: No such file"):
        source_for(web_dir, clock)
    (web_dir / "gone.key").rename(web_dir / "tls.key")
    source = source_for(web_dir, clock)
    (web_dir / "tls.crt").unlink()
    clock.tick()
    assert source.tls() is not None and source.reload_errors == 1


def test_metrics_of_the_reloads(web_dir: Path) -> None:
    from prometheus_client import CollectorRegistry

    clock = Clock()
    source = source_for(web_dir, clock)
    registry = CollectorRegistry()
    registry.register(source)
    assert registry.get_sample_value("podbw_web_config_last_reload_successful") == 1.0
    (web_dir / "web.yml").write_text("nope: 1\n")
    clock.tick()
    source.tls()
    assert registry.get_sample_value("podbw_web_config_last_reload_successful") == 0.0
    assert registry.get_sample_value("podbw_web_config_reload_errors_total") == 1.0
