"""Authentication for ``medmoe serve``: one server token, optional users, expiring bearer tokens.

- The **server token** (``MEDMOE_SERVE_TOKEN``, or a random one printed at start-up, as Jupyter
  does) is accepted as a bearer token by every endpoint; the viewer page takes it once from
  ``?token=...``. It lives as long as the server.
- **Users** come from a file of ``name:pbkdf2_sha256$iterations$salt$hash`` lines (made by
  ``python -m medmoe.serve.auth NAME``). ``POST /auth/token`` (MONAI Label's OAuth2 password
  form) trades a user's password, or the server token under the user name ``token``, for a
  **bearer token** that expires after ``token_ttl_s`` seconds.
- Bearer tokens are ``<payload>.<HMAC-SHA256>`` signed with a key drawn at start-up: they need no
  table, and all die with the server. Every secret is compared with ``hmac.compare_digest``;
  passwords and tokens are never logged, and failures say only "invalid credentials".
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from medmoe.errors import InputError

TOKEN_ENV = "MEDMOE_SERVE_TOKEN"
TOKEN_USER = "token"  # the user name under which the server token logs in
MIN_TOKEN_CHARS = 16
PBKDF2_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS, salt=None) -> str:
    """``pbkdf2_sha256$iterations$salt$hash`` (salt and hash in URL-safe base64)."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"pbkdf2_sha256${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` string (constant-time comparison)."""
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        got = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), _unb64(salt), int(iterations))
        return hmac.compare_digest(got, _unb64(digest))
    except (ValueError, TypeError):
        return False


def load_users(path: str | os.PathLike) -> dict[str, str]:
    """``{name: hash}`` from a users file; blank lines and ``#`` comments are skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--users {path}: no such file")
    users = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        if not sep or not name or not stored.startswith("pbkdf2_sha256$") or stored.count("$") != 3:
            raise InputError(
                f"--users {path}, line {n}: expected NAME:pbkdf2_sha256$... "
                "(make one with: python -m medmoe.serve.auth NAME)"
            )
        if name == TOKEN_USER:
            raise InputError(f"--users {path}, line {n}: the user name {TOKEN_USER!r} is reserved")
        users[name] = stored
    if not users:
        raise InputError(f"--users {path}: no users in the file")
    return users


@dataclass(frozen=True)
class AuthConfig:
    token: str  # the server token: a bearer token itself, and the password of user "token"
    users: dict[str, str] = field(default_factory=dict)  # name -> hash_password string
    token_ttl_s: float = 8 * 3600.0  # lifetime of the tokens /auth/token issues

    def __post_init__(self) -> None:
        if len(self.token) < MIN_TOKEN_CHARS:
            raise InputError(f"the server token must have at least {MIN_TOKEN_CHARS} characters")
        if self.token_ttl_s <= 0:
            raise ValueError(f"token_ttl_s must be positive, got {self.token_ttl_s}")


def server_token_from_env() -> tuple[str, bool]:
    """``(token, generated)``: ``MEDMOE_SERVE_TOKEN`` if set, else a new random token."""
    token = os.environ.get(TOKEN_ENV, "")
    if token:
        return token, False
    return secrets.token_urlsafe(32), True


class Authenticator:
    """Checks credentials and issues bearer tokens; ``clock`` is wall time in seconds."""

    def __init__(self, *, config: AuthConfig, clock=time.time) -> None:
        self.config = config
        self.clock = clock
        self._key = secrets.token_bytes(32)  # signs this process's bearer tokens
        # compared against when the user is unknown, so that the work done is the same
        iterations = max((int(h.split("$")[1]) for h in config.users.values()), default=1)
        self._dummy = hash_password(secrets.token_hex(8), iterations=iterations)

    def _mac(self, payload: str) -> str:
        return _b64(
            hmac.new(self._key, payload.encode("utf-8", "replace"), hashlib.sha256).digest()
        )

    def login(self, username: str, password: str) -> str | None:
        """A bearer token for valid credentials, else ``None``. Every branch runs one
        constant-time comparison so that a missing user is not told apart by timing alone."""
        if username == TOKEN_USER:
            ok = hmac.compare_digest(
                password.encode("utf-8", "replace"), self.config.token.encode("utf-8")
            )
        else:
            stored = self.config.users.get(username)
            ok = verify_password(password, stored or self._dummy) and stored is not None
        return self.issue(username) if ok else None

    def issue(self, username: str) -> str:
        body = {"u": username, "exp": round(self.clock() + self.config.token_ttl_s, 3)}
        payload = _b64(json.dumps(body, separators=(",", ":")).encode("utf-8"))
        return f"{payload}.{self._mac(payload)}"

    def user_of(self, token: str) -> str | None:
        """The user a bearer token (or the server token) stands for, or ``None``."""
        if hmac.compare_digest(token.encode("utf-8", "replace"), self.config.token.encode("utf-8")):
            return TOKEN_USER
        payload, sep, mac = token.partition(".")
        expected = self._mac(payload).encode("ascii")
        if not sep or not hmac.compare_digest(mac.encode("utf-8", "replace"), expected):
            return None
        try:
            body = json.loads(_unb64(payload))
            user, expiry = str(body["u"]), float(body["exp"])
        except (ValueError, KeyError, TypeError):
            return None
        return user if self.clock() < expiry else None

    def user_of_header(self, header: str | None) -> str | None:
        """The user behind an ``Authorization: Bearer <token>`` header, or ``None``."""
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.user_of(token.strip())


def main(argv: list[str] | None = None) -> int:
    """``python -m medmoe.serve.auth NAME``: print a users-file line for NAME. The password is
    read twice from the terminal, or once from standard input when that is not a terminal."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0] or ":" in args[0] or args[0] == TOKEN_USER:
        print("usage: python -m medmoe.serve.auth NAME  (NAME without ':', not 'token')")
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if password != getpass.getpass("again: "):
            print("the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        print("the password must have at least 8 characters", file=sys.stderr)
        return 2
    print(f"{args[0]}:{hash_password(password)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
