"""Sign-in tokens: generated once, shown once, stored only as a salted scrypt hash.

A token reads `pk_<key>_<secret>`. The key is public and indexed, so the store finds the user
without scanning every hash; only the secret is hashed (scrypt, random salt) and checked with a
constant-time compare.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_PREFIX = "pk"
# scrypt cost: ~16 MiB and a few ms per check; sign-in is rare, sessions carry the rest.
_N, _R, _P = 2**14, 8, 1


def new_token() -> tuple[str, str, str]:
    """A fresh token: (token to show once, public key to store, salted hash to store)."""
    key = secrets.token_hex(8)
    secret = secrets.token_urlsafe(24)
    return f"{_PREFIX}_{key}_{secret}", key, hash_secret(secret)


def split_token(token: str) -> tuple[str, str] | None:
    """(key, secret) of a well-formed token, or None."""
    parts = token.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != _PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash` (base64) of the secret with a random 16-byte salt."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.urlsafe_b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time check of a secret against a stored `hash_secret` value."""
    try:
        algo, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if algo != "scrypt":
            return False
        salt = base64.urlsafe_b64decode(salt_b64)
        expected = base64.urlsafe_b64decode(digest_b64)
        got = hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


def new_session_key() -> tuple[str, str]:
    """(session key for the browser tab, its SHA-256 to store). Keys are 256-bit random, so an
    unsalted fast hash suffices: a leaked table gives nothing to brute-force."""
    key = secrets.token_urlsafe(32)
    return key, session_key_hash(key)


def session_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
