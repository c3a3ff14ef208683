"""Credential material for a Registry: passwords, htpasswd files, docker config JSON.

Pure helpers. Generated values are reused whenever the stored ones are still
valid, so a reconcile that changes nothing writes nothing and rolls no pods.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence

import bcrypt

ADMIN_USERNAME = "admin"
# bcrypt cost: 2^10 rounds keeps a reconcile with a few users well under a second.
BCRYPT_ROUNDS = 10


def generate_password() -> str:
    """Return a new random password (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


def generate_http_secret() -> str:
    """Return a new random secret for Distribution's upload-state signing."""
    return secrets.token_hex(32)


def parse_htpasswd(text: str) -> dict[str, str]:
    """Parse htpasswd lines into {username: hash}; malformed lines are ignored."""
    entries = {}
    for line in text.splitlines():
        username, separator, hashed = line.partition(":")
        if separator and username and hashed:
            entries[username] = hashed
    return entries


def htpasswd(users: Sequence[tuple[str, str]], previous: Mapping[str, str]) -> str:
    """Build an htpasswd file with bcrypt hashes, reusing a previous hash when it still matches."""
    lines = []
    for username, password in users:
        hashed = previous.get(username)
        if hashed is None or not _matches(password, hashed):
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()
            _remember(password, hashed)
        lines.append(f"{username}:{hashed}")
    return "\n".join(lines) + "\n"


# Verified (password, hash) pairs, by digest: bcrypt costs tens of milliseconds
# per check, and every pass re-checks every user. Cleared when full.
_verified: set[str] = set()
_VERIFIED_MAX = 4096


def _key(password: str, hashed: str) -> str:
    return hashlib.sha256(f"{password}\0{hashed}".encode()).hexdigest()


def _remember(password: str, hashed: str) -> None:
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified.add(_key(password, hashed))


def _matches(password: str, hashed: str) -> bool:
    if _key(password, hashed) in _verified:
        return True
    try:
        matched = bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False
    if matched:
        _remember(password, hashed)
    return matched


def docker_config_json(hosts: Sequence[str], username: str, password: str) -> str:
    """Return a .dockerconfigjson document that logs in to every host."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    auths = {host: {"username": username, "password": password, "auth": token} for host in hosts}
    return json.dumps({"auths": auths}, sort_keys=True)
