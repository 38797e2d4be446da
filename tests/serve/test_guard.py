"""Host and Origin rules of medmoe.serve.guard, table-driven."""

from __future__ import annotations

import pytest

from medmoe.serve.guard import HostPolicy, host_name


@pytest.mark.parametrize(
    "netloc, name",
    [
        ("LocalHost:8000", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]:8000", "::1"),
        ("::1", "::1"),
        ("medmoe.example.org", "medmoe.example.org"),
    ],
)
def test_host_name(netloc, name):
    assert host_name(netloc) == name


LOOPBACK = HostPolicy(bind_host="127.0.0.1")
WILDCARD = HostPolicy(bind_host="0.0.0.0", public_urls=["https://medmoe.example.org"])


@pytest.mark.parametrize(
    "policy, host, ok",
    [
        (LOOPBACK, "127.0.0.1:8000", True),
        (LOOPBACK, "localhost:8000", True),
        (LOOPBACK, "[::1]:8000", True),
        (LOOPBACK, "127.0.0.2", True),  # loopback addresses: not from DNS
        (LOOPBACK, "attacker.example", False),  # DNS rebinding sends the attacker's name
        (LOOPBACK, "localhost.attacker.example", False),
        (LOOPBACK, "192.168.1.5:8000", False),  # not where a loopback server is reached
        (LOOPBACK, "", False),
        (LOOPBACK, None, False),
        (WILDCARD, "192.168.1.5:8000", True),  # any IP literal when bound to every address
        (WILDCARD, "medmoe.example.org", True),  # the --public-url host
        (WILDCARD, "attacker.example", False),
        (HostPolicy(bind_host="scanner.lan"), "scanner.lan:8000", True),  # the bound name
    ],
)
def test_hosts(policy, host, ok):
    assert policy.host_ok(host) is ok


@pytest.mark.parametrize(
    "origin, host, ok",
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),  # same origin
        ("http://127.0.0.1:9999", "127.0.0.1:8000", False),  # another local web app
        ("http://attacker.example", "127.0.0.1:8000", False),
        ("null", "127.0.0.1:8000", False),  # sandboxed frames and file:// pages
        ("https://medmoe.example.org", "medmoe.example.org", True),  # behind the proxy
        ("http://localhost:3000", "127.0.0.1:8000", True),  # an --allow-origin
        ("http://localhost:3000/", "127.0.0.1:8000", True),
    ],
)
def test_origins(origin, host, ok):
    policy = HostPolicy(
        bind_host="127.0.0.1",
        public_urls=["https://medmoe.example.org"],
        origins=["http://localhost:3000"],
    )
    assert policy.origin_ok(origin, host) is ok
