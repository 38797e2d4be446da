"""Authentication for ``medmoe serve``: one server token, users with roles, expiring bearer
tokens, and limits on logins.

- The **server token** (``MEDMOE_SERVE_TOKEN``, or a random one printed at start-up, as Jupyter
  does) is accepted as a bearer token by every endpoint; the viewer page takes it once from
  ``?token=...``. It lives as long as the server, must have at least ``MIN_TOKEN_CHARS`` (32)
  characters and must not be one character repeated; whoever holds it is ``admin``.
- **Users** come from a file of ``name:pbkdf2_sha256$iterations$salt$hash[:role]`` lines (made
  by ``python -m medmoe.serve.auth NAME [ROLE]``). ``POST /auth/token`` (MONAI Label's OAuth2
  password form) trades a user's password, or the server token under the user name ``token``,
  for a **bearer token** that expires after ``token_ttl_s`` seconds.
- **Roles** are MONAI Label's (``admin``, ``reviewer``, ``annotator`` for a line without one,
  ``user``); :func:`may` says which role may do which of :data:`ACTIONS`.
- **Login limits** (:class:`LoginLimits`): after ``per_client`` failed logins from a client, or
  ``overall`` from all, in ``window_s`` seconds, logins (user ``token`` too) get
  :class:`RateLimited` (HTTP 429) before anything is hashed or compared; at most
  ``concurrent_hashes`` password hashes run at once, so bogus logins cannot use up the CPUs.
- Bearer tokens are ``<payload>.<HMAC-SHA256>`` signed with a key drawn at start-up: they need no
  table, and all die with the server. Every secret is compared with ``hmac.compare_digest`` (the
  server token as SHA-256 digests, so that its length does not leak either); passwords and
  tokens are never logged, and failures say only "invalid credentials".
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import json
import math
import os
import secrets
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

from medmoe.errors import InputError, MedmoeError

TOKEN_ENV = "MEDMOE_SERVE_TOKEN"
TOKEN_USER = "token"  # the user name under which the server token logs in
MIN_TOKEN_CHARS = 32
PBKDF2_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
ROLES = ("admin", "reviewer", "annotator", "user")  # MONAI Label's names
DEFAULT_ROLE = "annotator"  # a users-file line without a role
TOKEN_ROLE = "admin"  # the server token's user
_EDITORS = frozenset({"admin", "reviewer", "annotator"})
ACTIONS = {  # action -> the roles that may do it
    "infer": frozenset(ROLES),
    "read_datastore": _EDITORS,
    "write_datastore": _EDITORS,
    "delete": frozenset({"admin"}),
    "train": frozenset({"admin", "reviewer"}),  # a job changes the model everyone is served
}
HASH_WAIT_S = 5.0  # how long a login waits for a free password-hashing slot
MAX_CLIENTS = 10_000  # clients whose failed logins are remembered (the oldest are dropped)


class RateLimited(MedmoeError):
    """Too many failed logins, or too many logins at once: the server answers 429."""


@dataclass(frozen=True)
class User:
    hash: str  # a hash_password string
    role: str = DEFAULT_ROLE


@dataclass(frozen=True)
class LoginLimits:
    per_client: int = 5  # failed logins per client per window
    overall: int = 50  # failed logins across all clients per window
    window_s: float = 60.0
    concurrent_hashes: int = 2  # password hashes running at once

    def __post_init__(self) -> None:
        if min(self.per_client, self.overall, self.window_s, self.concurrent_hashes) <= 0:
            raise ValueError(f"every LoginLimits field must be positive: {self}")


def may(role: str, action: str) -> bool:
    """Whether ``role`` may do ``action`` (one of :data:`ACTIONS`); an unknown role may not."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
    return role in ACTIONS[action]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "replace")).digest()


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


def load_users(path: str | os.PathLike) -> dict[str, User]:
    """``{name: User}`` from a users file of ``NAME:HASH`` or ``NAME:HASH:ROLE`` lines; blank
    lines and ``#`` comments are skipped; a line without a role gets :data:`DEFAULT_ROLE`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--users {path}: no such file")
    users = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, rest = line.partition(":")
        stored, has_role, role = rest.partition(":")
        if not sep or not name or not stored.startswith("pbkdf2_sha256$") or stored.count("$") != 3:
            raise InputError(
                f"--users {path}, line {n}: expected NAME:pbkdf2_sha256$...[:ROLE] "
                "(make one with: python -m medmoe.serve.auth NAME [ROLE])"
            )
        if name == TOKEN_USER:
            raise InputError(f"--users {path}, line {n}: the user name {TOKEN_USER!r} is reserved")
        if has_role and role not in ROLES:
            raise InputError(
                f"--users {path}, line {n}: unknown role {role!r} (one of {', '.join(ROLES)})"
            )
        users[name] = User(hash=stored, role=role if has_role else DEFAULT_ROLE)
    if not users:
        raise InputError(f"--users {path}: no users in the file")
    return users


def _check_server_token(token: str) -> None:
    """One-line refusals that never echo the token."""
    if len(token) < MIN_TOKEN_CHARS:
        raise InputError(
            f"{TOKEN_ENV}: the server token must have at least {MIN_TOKEN_CHARS} characters"
        )
    if len(set(token)) == 1:
        raise InputError(
            f"{TOKEN_ENV}: the server token is one character repeated; use a random one "
            '(python -c "import secrets; print(secrets.token_urlsafe(32))")'
        )


@dataclass(frozen=True)
class AuthConfig:
    token: str  # the server token: a bearer token itself, and the password of user "token"
    users: dict[str, User | str] = field(default_factory=dict)  # a plain hash: DEFAULT_ROLE
    token_ttl_s: float = 8 * 3600.0  # lifetime of the tokens /auth/token issues
    limits: LoginLimits = LoginLimits()

    def __post_init__(self) -> None:
        _check_server_token(self.token)
        if self.token_ttl_s <= 0:
            raise ValueError(f"token_ttl_s must be positive, got {self.token_ttl_s}")
        users = {}
        for name, user in self.users.items():
            user = User(hash=user) if isinstance(user, str) else user
            if not isinstance(user, User) or user.role not in ROLES:
                raise InputError(f"user {name!r}: expected a hash or a User with a role in {ROLES}")
            users[name] = user
        object.__setattr__(self, "users", users)


def server_token_from_env() -> tuple[str, bool]:
    """``(token, generated)``: ``MEDMOE_SERVE_TOKEN`` if set, else a new random token."""
    token = os.environ.get(TOKEN_ENV, "")
    if token:
        return token, False
    return secrets.token_urlsafe(32), True


class Authenticator:
    """Checks credentials, limits failed logins and issues bearer tokens; ``clock`` is wall time
    in seconds. Thread-safe: ``login`` runs in the server's threadpool."""

    def __init__(self, *, config: AuthConfig, clock=time.time) -> None:
        self.config = config
        self.clock = clock
        self._key = secrets.token_bytes(32)  # signs this process's bearer tokens
        self._token_digest = _sha256(config.token)
        # compared against when the user is unknown, so that the work done is the same
        iterations = max((int(u.hash.split("$")[1]) for u in config.users.values()), default=1)
        self._dummy = hash_password(secrets.token_hex(8), iterations=iterations)
        limits = config.limits
        self._lock = threading.Lock()  # guards the two failure records below
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()  # client -> times
        self._all_failures: deque[float] = deque(maxlen=limits.overall)
        self._hash_slots = threading.BoundedSemaphore(limits.concurrent_hashes)

    def _mac(self, payload: str) -> str:
        return _b64(
            hmac.new(self._key, payload.encode("utf-8", "replace"), hashlib.sha256).digest()
        )

    def login(self, username: str, password: str, *, client: str = "") -> str | None:
        """A bearer token for valid credentials, else ``None``; :class:`RateLimited` when
        ``client`` (or everyone) failed too often lately, or too many hashes are running. Every
        branch runs one constant-time comparison so that a missing user is not told apart by
        timing alone."""
        self._check_limits(client)
        if username == TOKEN_USER:
            ok = hmac.compare_digest(_sha256(password), self._token_digest)
        else:
            ok = self._check_password(username, password, client)
        if not ok:
            self._record_failure(client)
            return None
        return self.issue(username)

    def _check_password(self, username: str, password: str, client: str) -> bool:
        if not self._hash_slots.acquire(timeout=HASH_WAIT_S):
            raise RateLimited("too many logins in progress: retry later")
        try:
            # again, now that a slot is ours: a burst waiting for slots while the first of its
            # attempts failed must not get one hash each
            self._check_limits(client)
            user = self.config.users.get(username)
            ok = verify_password(password, user.hash if user else self._dummy)
            return ok and user is not None
        finally:
            self._hash_slots.release()

    def _check_limits(self, client: str) -> None:
        window = self.config.limits.window_s
        with self._lock:
            now = self.clock()
            mine = self._failures.get(client)
            waits = []
            for times in (mine, self._all_failures):
                if times is None:
                    continue
                while times and times[0] + window <= now:  # out of the window
                    times.popleft()
                if len(times) == times.maxlen:  # the deques keep only the last `limit` times
                    waits.append(times[0] + window - now)
            if mine is not None and not mine:
                del self._failures[client]
        if waits:
            raise RateLimited(f"too many failed logins: retry in {max(1, math.ceil(max(waits)))} s")

    def _record_failure(self, client: str) -> None:
        with self._lock:
            now = self.clock()
            times = self._failures.get(client)
            if times is None:
                times = self._failures[client] = deque(maxlen=self.config.limits.per_client)
            else:
                self._failures.move_to_end(client)
            times.append(now)
            self._all_failures.append(now)
            while len(self._failures) > MAX_CLIENTS:
                self._failures.popitem(last=False)  # the client that failed least recently

    def role_of(self, user: str) -> str | None:
        """The role of a user :meth:`user_of` returned, or ``None`` for an unknown user."""
        if user == TOKEN_USER:
            return TOKEN_ROLE
        found = self.config.users.get(user)
        return found.role if found else None

    def issue(self, username: str) -> str:
        body = {"u": username, "exp": round(self.clock() + self.config.token_ttl_s, 3)}
        payload = _b64(json.dumps(body, separators=(",", ":")).encode("utf-8"))
        return f"{payload}.{self._mac(payload)}"

    def user_of(self, token: str) -> str | None:
        """The user a bearer token (or the server token) stands for, or ``None``."""
        if hmac.compare_digest(_sha256(token), self._token_digest):
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
    """``python -m medmoe.serve.auth NAME [ROLE]``: print a users-file line for NAME (with
    ``:ROLE`` when a role is given). The password is read twice from the terminal, or once from
    standard input when that is not a terminal."""
    args = sys.argv[1:] if argv is None else argv
    bad_name = not args or not args[0] or ":" in args[0] or args[0] == TOKEN_USER
    if bad_name or len(args) > 2 or (len(args) == 2 and args[1] not in ROLES):
        print(
            "usage: python -m medmoe.serve.auth NAME [ROLE]  (NAME without ':', not 'token'; "
            f"ROLE one of {', '.join(ROLES)}, default {DEFAULT_ROLE})"
        )
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
    role = f":{args[1]}" if len(args) == 2 else ""
    print(f"{args[0]}:{hash_password(password)}{role}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
