"""Basic auth against bcrypt hashes: header parsing, verdicts, the success cache, and the bound
on concurrent bcrypt checks; then over HTTP with a web config file."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import bcrypt
import pytest

from agent.service import basic_auth
from agent.service.basic_auth import BasicAuth, Verdict, parse_authorization
from tests.unit.http_helpers import get

PASSWORD = b"s3cret:with colon"
HASH = bcrypt.hashpw(PASSWORD, bcrypt.gensalt(4))  # cost 4: fast tests
USERS = {"prometheus": HASH}


def basic(user: str, password: bytes) -> str:
    return "Basic " + base64.b64encode(user.encode() + b":" + password).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic("alice", b"pw"), ("alice", b"pw")),
        (basic("alice", b""), ("alice", b"")),
        (basic("alice", b"a:b"), ("alice", b"a:b")),
        ("basic " + base64.b64encode(b"bob:x").decode(), ("bob", b"x")),
        (basic("j\u00fcrgen", b"x"), ("j\u00fcrgen", b"x")),
        ("", None),
        ("Bearer abc", None),
        ("Basic", None),
        ("Basic !!!", None),
        ("Basic " + base64.b64encode(b"no-colon").decode(), None),
        ("Basic " + base64.b64encode(b"\xff:x").decode(), None),
    ],
)
def test_parse_authorization(header: str, expected) -> None:
    assert parse_authorization(header) == expected


@pytest.fixture
def bcrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    calls: list[bytes] = []
    real = basic_auth._bcrypt_matches

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(basic_auth, "_bcrypt_matches", counting)
    return calls


@pytest.mark.parametrize(
    ("header", "verdict", "checked_hash"),
    [
        (basic("prometheus", PASSWORD), Verdict.ALLOWED, HASH),
        (basic("prometheus", b"wrong"), Verdict.DENIED, HASH),
        (basic("prometheus", b"x" * 100), Verdict.DENIED, HASH),  # over bcrypt's 72 bytes
        (basic("mallory", PASSWORD), Verdict.DENIED, basic_auth.UNKNOWN_USER_HASH),  # as slow as a known user
        ("", Verdict.DENIED, None),
        ("Bearer x", Verdict.DENIED, None),
    ],
)
def test_verdicts(bcrypt_calls: list[bytes], header: str, verdict: Verdict, checked_hash: bytes | None) -> None:
    assert BasicAuth().check(header, USERS) is verdict
    assert bcrypt_calls == ([checked_hash] if checked_hash else [])


def test_a_success_is_cached_a_failure_is_not(bcrypt_calls: list[bytes]) -> None:
    auth = BasicAuth()
    for _ in range(5):
        assert auth.check(basic("prometheus", PASSWORD), USERS) is Verdict.ALLOWED
    assert len(bcrypt_calls) == 1
    for _ in range(3):
        assert auth.check(basic("prometheus", b"guess"), USERS) is Verdict.DENIED
    assert len(bcrypt_calls) == 4
    # A new hash for the user (the file changed): the cached success no longer counts.
    new_hash = bcrypt.hashpw(b"other", bcrypt.gensalt(4))
    assert auth.check(basic("prometheus", PASSWORD), {"prometheus": new_hash}) is Verdict.DENIED
    assert auth.check(basic("prometheus", PASSWORD), {}) is Verdict.DENIED


def test_one_bcrypt_check_at_a_time_and_waiters_are_told_to_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(password: bytes, hashed: bytes) -> bool:
        entered.set()
        release.wait(10)
        return True

    monkeypatch.setattr(basic_auth, "_bcrypt_matches", slow)
    monkeypatch.setattr(basic_auth, "WAIT_FOR_CHECK_S", 0.01)
    auth = BasicAuth()
    verdicts: list[Verdict] = []
    first = threading.Thread(target=lambda: verdicts.append(auth.check(basic("prometheus", b"a"), USERS)))
    first.start()
    try:
        assert entered.wait(10)
        assert auth.check(basic("prometheus", b"b"), USERS) is Verdict.BUSY
    finally:
        release.set()
        first.join(10)
    assert verdicts == [Verdict.ALLOWED]


# ---- over HTTP -----------------------------------------------------------------------------


@pytest.fixture
def auth_server(start_server, tmp_path: Path):
    config = tmp_path / "web.yml"
    config.write_text(
        f"basic_auth_users:\n  prometheus: {HASH.decode()}\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n"
    )
    return start_server(web_config_file=str(config))


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz", "/nope"])
def test_every_path_needs_the_password(auth_server, path: str) -> None:
    status, headers, _ = get(auth_server.port, path)
    assert status == 401 and headers["www-authenticate"] == "Basic"
    status, _, _ = get(auth_server.port, path, {"Authorization": basic("prometheus", b"wrong")})
    assert status == 401
    status, _, _ = get(auth_server.port, path, {"Authorization": basic("prometheus", PASSWORD)})
    assert status == (404 if path == "/nope" else 200)


@pytest.mark.parametrize("password", [PASSWORD, b"wrong"])
def test_configured_headers_are_on_every_response(auth_server, password: bytes) -> None:
    _, headers, _ = get(auth_server.port, "/metrics", {"Authorization": basic("prometheus", password)})
    assert headers["x-frame-options"] == "deny"
    assert headers["x-content-type-options"] == "nosniff"
