"""Reviewer passwords for a small team without an identity provider: PBKDF2-SHA256 hashes in
`.streamlit/secrets.toml` under [reviewers]. Only hashes are stored; comparison is constant-time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping

ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 600_000


def hash_password(password: str, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{ALGORITHM}${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        algorithm, iterations, salt, digest = encoded.split("$")
        if algorithm != ALGORITHM:
            return False
        actual = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
        return hmac.compare_digest(actual, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def check_reviewer(reviewers: Mapping[str, str], name: str, password: str) -> bool:
    """True when `name` is a configured reviewer and the password matches; the same work is done for
    unknown names, so timing does not reveal who is a reviewer."""
    encoded = reviewers.get(name)
    if encoded is None:
        verify_password(password, hash_password("", iterations=ITERATIONS, salt=b"\0" * 16))
        return False
    return verify_password(password, encoded)
