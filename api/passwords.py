"""Password hashing with scrypt (memory-hard, in the standard library), salted per user.

Stored as ``scrypt$n$r$p$salt$hash`` (base64), so the cost can be raised later and old hashes
still verify. Verification compares in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

N, R, P = 2**14, 8, 1
MIN_LENGTH = 10
MAX_LENGTH = 1024


class PasswordError(ValueError):
    """A password that may not be set; the message names the rule."""


def check_strength(password: str, name: str) -> None:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise PasswordError(f"a password needs {MIN_LENGTH} to {MAX_LENGTH} characters")
    if password.lower() == name.lower() or len(set(password)) < 4:
        raise PasswordError("that password is too easy to guess; pick a longer, varied one")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    encode = base64.b64encode
    return f"scrypt${N}${R}${P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    """True if ``password`` matches; always spends one scrypt, so timing tells nothing."""
    try:
        scheme, n, r, p, salt, digest = (stored or "").split("$")
        assert scheme == "scrypt"
        params = (int(n), int(r), int(p))
        salt_bytes, expected = base64.b64decode(salt), base64.b64decode(digest)
    except (ValueError, AssertionError):
        params, salt_bytes, expected = (N, R, P), b"\0" * 16, b""
    got = hashlib.scrypt(password.encode()[:MAX_LENGTH * 4], salt=salt_bytes, n=params[0],
                         r=params[1], p=params[2], dklen=32)  # fmt: skip
    return bool(expected) and hmac.compare_digest(got, expected)
