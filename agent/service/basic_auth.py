"""HTTP basic authentication against bcrypt hashes, as exporter-toolkit's basic_auth_users.

bcrypt is slow on purpose (~70 ms at cost 10): successful checks are cached, so a scraper pays
it once, not at every scrape; and one check runs at a time, so wrong passwords cannot take
every HTTP worker (a request that would wait too long is told to retry: 429).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import threading
from collections import OrderedDict
from typing import Mapping

CACHE_ENTRIES = 256
WAIT_FOR_CHECK_S = 0.25
"""How long a request waits for another one's bcrypt check before it gets a 429."""
UNKNOWN_USER_HASH = b"$2b$10$6mDmV4TWz90kVLiK0.L6fu/vYOvHXCKtdRXeiWPgRl5WvvCW/x40y"
"""Checked for unknown users, so they take as long as known ones (no user enumeration)."""


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    DENIED = "denied"
    BUSY = "busy"


def parse_authorization(header: str) -> tuple[str, bytes] | None:
    """(user, password) of a `Basic` Authorization header, None when it is not one."""
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


class BasicAuth:
    def __init__(self) -> None:
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._one_check = threading.Semaphore(1)

    def check(self, authorization: str, users: Mapping[str, bytes]) -> Verdict:
        credentials = parse_authorization(authorization)
        if credentials is None:
            return Verdict.DENIED
        user, password = credentials
        hashed = users.get(user)
        # The key holds no password: a digest of user, hash and password.
        key = hashlib.sha256(b"\0".join((user.encode(), hashed or b"", password))).digest()
        with self._cache_lock:
            if hashed is not None and key in self._cache:
                self._cache.move_to_end(key)
                return Verdict.ALLOWED
        if not self._one_check.acquire(timeout=WAIT_FOR_CHECK_S):
            return Verdict.BUSY
        try:
            ok = _bcrypt_matches(password, hashed or UNKNOWN_USER_HASH)
        finally:
            self._one_check.release()
        if not ok or hashed is None:
            return Verdict.DENIED
        with self._cache_lock:
            self._cache[key] = None
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return Verdict.ALLOWED


def _bcrypt_matches(password: bytes, hashed: bytes) -> bool:
    import bcrypt  # on first use: half a MiB of RSS that agents without basic auth never need

    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:  # e.g. a password over bcrypt's 72 bytes: a wrong one
        return False
