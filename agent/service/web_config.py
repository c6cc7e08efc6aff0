"""`--web.config.file`: the prometheus/exporter-toolkit web configuration, so the file users
write for node_exporter works for podbw (docs/web-configuration.md in exporter-toolkit).

Supported: tls_server_config (cert_file, key_file, client_ca_file, client_auth_type,
min_version, max_version, prefer_server_cipher_suites), http_server_config (headers, http2),
basic_auth_users (bcrypt hashes). Keys exporter-toolkit knows but podbw does not implement, and
unknown keys, are refused with an error naming them; nothing is silently ignored.
"""

from __future__ import annotations

import os
import re
import ssl
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

MAX_FILE_BYTES = 1024 * 1024

CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    # podbw never looks at a certificate it has not verified: asking for one changes nothing.
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNVERIFIED_CLIENT_AUTH_TYPES = ("RequireAnyClientCert", "RequireClientCert")
"""Accept any certificate, unverified: Python's ssl module has no verify callback to do that."""
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
ALLOWED_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
"""Exporter-toolkit's list: header -> allowed values (empty: any)."""
BCRYPT_HASH = re.compile(r"^\$2[aby]?\$(\d\d)\$[./A-Za-z0-9]{53}$")

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS = (
    "cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version",
    "prefer_server_cipher_suites",
)
_HTTP_KEYS = ("headers", "http2")
_NOT_IMPLEMENTED = {
    "": ("rate_limit",),
    "tls_server_config": ("cert", "key", "client_ca", "cipher_suites", "curve_preferences", "client_allowed_sans"),
    "http_server_config": (),
}


class WebConfigError(ValueError):
    """The web config is unusable; the message is one line naming the file and the key."""


@dataclass(frozen=True)
class TlsServerConfig:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    prefer_server_cipher_suites: bool = True

    def files(self) -> tuple[str, ...]:
        return tuple(f for f in (self.cert_file, self.key_file, self.client_ca_file) if f)


@dataclass(frozen=True)
class WebConfig:
    tls: TlsServerConfig | None = None
    """None: plain HTTP."""
    basic_auth_users: Mapping[str, bytes] = field(default_factory=dict)
    """User name -> bcrypt hash; empty: no authentication."""
    headers: tuple[tuple[str, str], ...] = ()
    """Added to every response."""


# ---- YAML ----------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (as exporter-toolkit's strict unmarshalling does)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise WebConfigError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> object:
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise WebConfigError("YAML anchors and aliases are not accepted")
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise WebConfigError(f"not valid YAML: {' '.join(str(exc).split())}") from None


# ---- validation ----------------------------------------------------------------------------


def _mapping(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{where or 'the file'}: want a mapping, got {_kind(value)}")
    for key in value:
        if not isinstance(key, str):
            raise WebConfigError(f"{where or 'the file'}: key {key!r} is not a string (quote it)")
    return value


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def _check_keys(section: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    for key in section:
        if key in known:
            continue
        if key in _NOT_IMPLEMENTED[where]:
            raise WebConfigError(f"{_join(where, key)}: not supported by podbw")
        raise WebConfigError(f"{_join(where, key)}: unknown key (known: {', '.join(known)})")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _string(section: dict[str, Any], key: str, where: str, default: str | None = None) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise WebConfigError(f"{_join(where, key)}: want a string, got {_kind(value)}")
    return value


def _bool(section: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = section.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise WebConfigError(f"{_join(where, key)}: want true or false, got {value!r}")
    return value


def _path(value: str | None, base_dir: str) -> str | None:
    """Relative to the config file's directory, as exporter-toolkit resolves them."""
    if value is None:
        return None
    return value if os.path.isabs(value) else os.path.join(base_dir, value)


def _tls(section: dict[str, Any], base_dir: str) -> TlsServerConfig | None:
    where = "tls_server_config"
    _check_keys(section, _TLS_KEYS, where)
    if not any(section.get(k) not in (None, "") for k in ("cert_file", "key_file", "client_ca_file", "client_auth_type")):
        return None  # exporter-toolkit: TLS is off until one of these is set
    cert = _string(section, "cert_file", where)
    key = _string(section, "key_file", where)
    if cert is None:
        raise WebConfigError(f"{where}.cert_file: required for TLS")
    if key is None:
        raise WebConfigError(f"{where}.key_file: required for TLS")
    ca = _string(section, "client_ca_file", where)
    auth = _string(section, "client_auth_type", where, "NoClientCert")
    assert auth is not None
    if auth in UNVERIFIED_CLIENT_AUTH_TYPES:
        raise WebConfigError(
            f"{where}.client_auth_type: {auth} (any certificate, unverified) is not supported by podbw;"
            " use RequireAndVerifyClientCert with client_ca_file"
        )
    if auth not in CLIENT_AUTH_TYPES:
        raise WebConfigError(
            f"{where}.client_auth_type: unknown value {auth!r} (want one of {', '.join(CLIENT_AUTH_TYPES)})"
        )
    if CLIENT_AUTH_TYPES[auth] != ssl.CERT_NONE and ca is None:
        raise WebConfigError(f"{where}.client_auth_type: {auth} needs client_ca_file")
    if auth == "NoClientCert" and ca is not None:
        raise WebConfigError(
            f"{where}.client_ca_file: set, but client_auth_type is NoClientCert (want RequireAndVerifyClientCert)"
        )
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        value = _string(section, name, where, default)
        if value not in TLS_VERSIONS:
            raise WebConfigError(f"{where}.{name}: unknown TLS version {value!r} (want one of {', '.join(TLS_VERSIONS)})")
        versions[name] = value
    if TLS_VERSIONS[versions["min_version"]] > TLS_VERSIONS[versions["max_version"]]:
        raise WebConfigError(f"{where}.min_version: {versions['min_version']} is above max_version {versions['max_version']}")
    return TlsServerConfig(
        cert_file=_path(cert, base_dir),  # type: ignore[arg-type]
        key_file=_path(key, base_dir),  # type: ignore[arg-type]
        client_ca_file=_path(ca, base_dir),
        client_auth_type=auth,
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        prefer_server_cipher_suites=_bool(section, "prefer_server_cipher_suites", where, True),
    )


def _headers(section: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    where = "http_server_config"
    _check_keys(section, _HTTP_KEYS, where)
    _bool(section, "http2", where, True)  # accepted for compatibility: podbw speaks HTTP/1.1
    headers = _mapping(section.get("headers"), f"{where}.headers")
    out = []
    for name, value in headers.items():
        where_name = f"{where}.headers.{name}"
        if name not in ALLOWED_HEADERS:
            raise WebConfigError(f"{where_name}: this header can not be configured (allowed: {', '.join(ALLOWED_HEADERS)})")
        if value is None or value == "":
            continue  # exporter-toolkit: unset if blank
        if not isinstance(value, str) or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise WebConfigError(f"{where_name}: want a one-line string, got {value!r}")
        allowed = ALLOWED_HEADERS[name]
        if allowed and value not in allowed:
            raise WebConfigError(f"{where_name}: invalid value {value!r} (want one of {', '.join(allowed)})")
        out.append((name, value))
    return tuple(out)


def _users(value: object) -> dict[str, bytes]:
    where = "basic_auth_users"
    users = _mapping(value, where)
    out = {}
    for user, hashed in users.items():
        if not user or ":" in user:
            raise WebConfigError(f"{where}: user name {user!r} must be non-empty and have no ':'")
        match = BCRYPT_HASH.match(hashed) if isinstance(hashed, str) else None
        if match is None or not 4 <= int(match.group(1)) <= 31:
            raise WebConfigError(f"{where}.{user}: not a bcrypt hash (want e.g. $2y$10$ and 53 characters)")
        out[user] = hashed.encode("ascii")
    return out


def parse_web_config(text: str, base_dir: str) -> WebConfig:
    """The WebConfig in `text`; relative file names are taken from base_dir. WebConfigError
    names the first key that is wrong. Certificate files are not read here (see tls_context)."""
    top = _mapping(_load_yaml(text), "")
    _check_keys(top, _TOP_KEYS, "")
    return WebConfig(
        tls=_tls(_mapping(top.get("tls_server_config"), "tls_server_config"), base_dir),
        basic_auth_users=_users(top.get("basic_auth_users")),
        headers=_headers(_mapping(top.get("http_server_config"), "http_server_config")),
    )


def read_web_config(path: str) -> WebConfig:
    """parse_web_config of the file at path, errors prefixed with the path."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise WebConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        if len(data) > MAX_FILE_BYTES:
            raise WebConfigError(f"larger than {MAX_FILE_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise WebConfigError("not UTF-8 text") from None
        return parse_web_config(text, os.path.dirname(os.path.abspath(path)))
    except WebConfigError as exc:
        raise WebConfigError(f"{path}: {exc}") from None


def _no_passphrase() -> bytes:
    raise WebConfigError("the key file is encrypted; podbw needs an unencrypted key")


def tls_context(tls: TlsServerConfig) -> ssl.SSLContext:
    """A server context from `tls`, its files read now; WebConfigError when they are unusable."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():  # TLS10/TLS11 are deprecated, but the file asked for them
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = TLS_VERSIONS[tls.min_version]
        context.maximum_version = TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=_no_passphrase)
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"cannot load cert_file {tls.cert_file} / key_file {tls.key_file}: {_reason(exc)}") from None
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(f"cannot load client_ca_file {tls.client_ca_file}: {_reason(exc)}") from None
    context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split())
