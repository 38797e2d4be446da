"""The server token's strength, roles, and the limits on failed and concurrent logins."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from medmoe.serve import auth as auth_module
from medmoe.serve.auth import (
    ACTIONS,
    DEFAULT_ROLE,
    ROLES,
    AuthConfig,
    Authenticator,
    LoginLimits,
    RateLimited,
    User,
    hash_password,
    load_users,
    may,
    verify_password,
)

TOKEN = "Zq3-varied-server-token-0123456789"
PASSWORD = "correct horse battery"
HASH = hash_password(PASSWORD, iterations=1000)  # few iterations: fast tests


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(limits: LoginLimits | None = None, **users):
    clock = Clock()
    config = AuthConfig(token=TOKEN, users=users or {"alice": HASH}, limits=limits or LoginLimits())
    return Authenticator(config=config, clock=clock), clock


# --- the server token ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token, message",
    [
        ("a" * 40, "one character repeated"),
        ("x" * 100, "one character repeated"),
        ("abcdefghijklmnopqrstuvwxyz01234", "at least 32 characters"),  # 31
        ("", "at least 32 characters"),
    ],
)
def test_weak_server_tokens_are_refused(token, message):
    with pytest.raises(ValueError, match=message) as err:
        AuthConfig(token=token)
    text = str(err.value)
    assert "MEDMOE_SERVE_TOKEN" in text and len(text.splitlines()) == 1
    assert not token or token not in text


def test_a_varied_32_character_token_is_accepted():
    token = "abcdefghijklmnopqrstuvwxyz012345"
    assert len(token) == 32 == auth_module.MIN_TOKEN_CHARS
    assert AuthConfig(token=token).token == token


# --- roles --------------------------------------------------------------------------------------


def test_users_file_roles(tmp_path):
    path = tmp_path / "users"
    h = hash_password("pw", iterations=1000)
    path.write_text(f"# team\nann:{h}\nboss:{h}:admin\n\nrev:{h}:reviewer\nviewer:{h}:user\n")
    users = load_users(path)
    assert users == {
        "ann": User(hash=h, role="annotator"),
        "boss": User(hash=h, role="admin"),
        "rev": User(hash=h, role="reviewer"),
        "viewer": User(hash=h, role="user"),
    }
    assert DEFAULT_ROLE == "annotator" and verify_password("pw", users["boss"].hash)


@pytest.mark.parametrize("role", ["root", "Admin", ""])
def test_unknown_roles_are_refused_with_the_line_number(tmp_path, role):
    path = tmp_path / "users"
    h = hash_password("pw", iterations=1000)
    path.write_text(f"ann:{h}\n# comment\nbob:{h}:{role}\n")
    with pytest.raises(ValueError, match=rf"line 3: unknown role '{role}'"):
        load_users(path)


def test_roles_of_users_and_the_server_token():
    auth, _ = make(ann=HASH, boss=User(hash=HASH, role="admin"), viewer=User(HASH, "user"))
    assert auth.config.users["ann"] == User(hash=HASH, role="annotator")  # a plain hash
    assert [auth.role_of(u) for u in ("ann", "boss", "viewer", "token", "nobody")] == [
        "annotator",
        "admin",
        "user",
        "admin",
        None,
    ]
    with pytest.raises(ValueError, match="role"):
        AuthConfig(token=TOKEN, users={"x": User(hash=HASH, role="root")})


def test_may():
    table = {role: sorted(a for a in ACTIONS if may(role, a)) for role in ROLES}
    assert table == {
        "admin": ["delete", "infer", "read_datastore", "train", "write_datastore"],
        "reviewer": ["infer", "read_datastore", "train", "write_datastore"],
        "annotator": ["infer", "read_datastore", "write_datastore"],
        "user": ["infer"],
    }
    assert not may("root", "infer") and not may("", "read_datastore")
    with pytest.raises(ValueError, match="unknown action"):
        may("admin", "drop_tables")


def test_hash_password_command_with_a_role():
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "medmoe.serve.auth", *args],
            input="a long password\n",
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = run("bob", "reviewer")
    assert done.returncode == 0, done.stderr
    name, stored, role = done.stdout.strip().split(":")
    assert name == "bob" and role == "reviewer" and verify_password("a long password", stored)
    bad = run("bob", "root")
    assert bad.returncode == 2 and "usage:" in bad.stdout and "reviewer" in bad.stdout


# --- failed-login limits ------------------------------------------------------------------------


def test_per_client_limit_then_the_window_passes():
    auth, clock = make()
    for _ in range(5):
        assert auth.login("alice", "wrong", client="10.0.0.1") is None
        clock.now += 1
    with pytest.raises(RateLimited, match="too many failed logins"):
        auth.login("alice", PASSWORD, client="10.0.0.1")  # even the right password
    assert auth.user_of(auth.login("alice", PASSWORD, client="10.0.0.2")) == "alice"
    clock.now = 1000.0 + 60  # the first failure (at 1000) has left the window
    assert auth.login("alice", PASSWORD, client="10.0.0.1") is not None
    assert auth.login("alice", "wrong", client="10.0.0.1") is None  # the 5th in the window
    with pytest.raises(RateLimited):
        auth.login("alice", PASSWORD, client="10.0.0.1")


def test_the_token_user_is_limited_the_same_way():
    auth, clock = make()
    for _ in range(5):
        assert auth.login("token", "guess", client="c") is None
    with pytest.raises(RateLimited):
        auth.login("token", TOKEN, client="c")
    assert auth.user_of(auth.login("token", TOKEN, client="d")) == "token"
    clock.now += 60
    assert auth.login("token", TOKEN, client="c") is not None


def test_a_success_does_not_clear_failures():
    auth, _ = make()
    for _ in range(4):
        auth.login("alice", "wrong", client="c")
    assert auth.login("alice", PASSWORD, client="c") is not None
    auth.login("alice", "wrong", client="c")
    with pytest.raises(RateLimited):
        auth.login("alice", PASSWORD, client="c")


def test_the_overall_limit_across_clients():
    auth, clock = make(LoginLimits(per_client=5, overall=12, window_s=60.0))
    for i in range(12):
        assert auth.login("mallory", "x", client=f"10.0.0.{i}") is None
    for user, password, client in (("alice", PASSWORD, "fresh"), ("token", TOKEN, "other")):
        with pytest.raises(RateLimited):
            auth.login(user, password, client=client)
    clock.now += 60
    assert auth.login("alice", PASSWORD, client="fresh") is not None


def test_retry_seconds_in_the_message():
    auth, clock = make(LoginLimits(per_client=3, overall=50, window_s=60.0))
    for t in (1000.0, 1010.5, 1020.0):
        clock.now = t
        auth.login("alice", "wrong", client="c")
    clock.now = 1030.7
    # the oldest counted failure (1000.0) leaves the window at 1060.0: 29.3 s -> 30 s
    with pytest.raises(RateLimited, match=r"^too many failed logins: retry in 30 s$"):
        auth.login("alice", PASSWORD, client="c")
    clock.now = 1059.9  # 0.1 s left rounds up to 1 s
    with pytest.raises(RateLimited, match=r"retry in 1 s$"):
        auth.login("alice", PASSWORD, client="c")
    clock.now = 1060.0
    assert auth.login("alice", PASSWORD, client="c") is not None
    # a 4th failure at 1060: the counted ones are now 1010.5, 1020.0, 1060.0 -> 1070.5
    auth.login("alice", "wrong", client="c")
    clock.now = 1061.2  # 9.3 s left -> 10 s
    with pytest.raises(RateLimited, match=r"retry in 10 s$"):
        auth.login("alice", PASSWORD, client="c")


def test_the_overall_message_counts_from_the_oldest_failure_of_all():
    auth, clock = make(LoginLimits(per_client=5, overall=3, window_s=60.0))
    for i, t in enumerate((1000.0, 1005.0, 1007.0)):
        clock.now = t
        auth.login("alice", "wrong", client=f"c{i}")
    clock.now = 1020.0
    with pytest.raises(RateLimited, match=r"retry in 40 s$"):
        auth.login("alice", PASSWORD, client="new")


def test_the_client_table_stays_bounded(monkeypatch):
    monkeypatch.setattr(auth_module, "MAX_CLIENTS", 100)
    auth, _ = make(LoginLimits(per_client=5, overall=10**6))
    for i in range(1000):
        auth.login("token", "guess", client=f"client-{i}")
    assert len(auth._failures) == 100
    assert set(auth._failures) == {f"client-{i}" for i in range(900, 1000)}  # the newest kept
    assert all(len(times) == 1 for times in auth._failures.values())


def test_the_default_client_table_bound():
    assert auth_module.MAX_CLIENTS == 10_000


def test_failures_are_counted_exactly_across_threads():
    auth, _ = make(LoginLimits(per_client=1000, overall=10**6, concurrent_hashes=4))

    def fail(client):
        for _ in range(50):
            auth.login("token", "guess", client=client)

    threads = [threading.Thread(target=fail, args=(f"c{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(auth._all_failures) == 400
    assert sorted(len(v) for v in auth._failures.values()) == [50] * 8


# --- concurrent password hashes -----------------------------------------------------------------


def test_logins_wait_for_a_free_hashing_slot(monkeypatch):
    monkeypatch.setattr(auth_module, "HASH_WAIT_S", 0.05)
    auth, _ = make(LoginLimits(concurrent_hashes=1))
    assert auth._hash_slots.acquire(timeout=1)  # the one slot is busy
    try:
        with pytest.raises(RateLimited, match="^too many logins in progress: retry later$"):
            auth.login("alice", PASSWORD, client="c")
        with pytest.raises(RateLimited):
            auth.login("nobody", "x", client="c")  # unknown users hash too (the dummy)
        assert auth.login("token", TOKEN, client="c") is not None  # no hash: no slot needed
    finally:
        auth._hash_slots.release()
    assert auth.login("alice", PASSWORD, client="c") is not None
    assert not auth._failures  # a busy refusal is not a failed login


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        LoginLimits(per_client=0)
    with pytest.raises(ValueError, match="positive"):
        LoginLimits(window_s=-1.0)


def test_a_burst_waiting_for_slots_is_limited_when_its_turn_comes(monkeypatch):
    """20 concurrent bad logins from one client, per_client 3, one hashing slot: those that
    passed the first check while others hashed are checked again once they hold the slot, so at
    most 3 hashes run in all (without the second check all 20 would hash, one after another)."""
    hashed = []
    real = auth_module.verify_password

    def counting(password, stored):
        hashed.append(1)
        return real(password, stored)

    monkeypatch.setattr(auth_module, "verify_password", counting)
    auth, _ = make(LoginLimits(per_client=3, concurrent_hashes=1))
    start = threading.Barrier(20)
    outcomes = []

    def attempt():
        start.wait()
        try:
            outcomes.append(auth.login("alice", "wrong", client="c"))
        except RateLimited:
            outcomes.append("limited")

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(hashed) == 3 and outcomes.count(None) == 3 and outcomes.count("limited") == 17
