"""Authentication, address filtering and the listener rule of the agent."""

from __future__ import annotations

import base64
import ipaddress

import pytest

from prtg_ai.agent import auth as auth_mod
from prtg_ai.agent.auth import (AuthConfigError, Authenticator, check_listen_policy, client_address,
                                is_loopback_host, parse_basic, parse_networks)

TOKENS = ["first-token-aaaa", "second-token-bbbb"]


def basic_header(user: str, password: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_bearer_query_and_basic():
    a = Authenticator(tokens=TOKENS, basic=[("prtg", "pa:ss-word-1")])
    assert a.check({"HTTP_AUTHORIZATION": "Bearer second-token-bbbb"}, None).status == 200
    assert a.check({"HTTP_AUTHORIZATION": "bearer first-token-aaaa"}, None).status == 200
    assert a.check({}, "first-token-aaaa").status == 200
    assert a.check(basic_header("prtg", "pa:ss-word-1"), None).status == 200  # colon inside the password
    assert a.check({}, None).status == 401
    assert a.check({}, "first-token-aaab").status == 401
    assert a.check({"HTTP_AUTHORIZATION": "Bearer "}, None).status == 401
    assert a.check(basic_header("prtg", "pa:ss-word-2"), None).status == 401
    assert a.check(basic_header("root", "pa:ss-word-1"), None).status == 401
    assert a.check({"HTTP_AUTHORIZATION": "Basic !!!notbase64"}, None).status == 401
    assert a.check({"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"nocolon").decode()}, None).status == 401
    # A wrong header is not rescued by a right query token: the header is what the client meant.
    assert a.check({"HTTP_AUTHORIZATION": "Bearer nope-nope-nope"}, "first-token-aaaa").status == 401
    assert a.challenge().startswith("Basic")
    assert a.methods == ["token", "basic"]


def test_every_secret_is_compared_in_constant_time(monkeypatch):
    calls = []

    def counting(x, y):
        calls.append((x, y))
        return x == y

    monkeypatch.setattr(auth_mod.hmac, "compare_digest", counting)
    a = Authenticator(tokens=TOKENS + ["third-token-cccc"])
    assert a.check({"HTTP_AUTHORIZATION": "Bearer first-token-aaaa"}, None).allowed
    assert len(calls) == 3  # no early exit after the first match
    calls.clear()
    b = Authenticator(basic=[("u1", "password-1"), ("u2", "password-2")])
    assert not b.check(basic_header("u1", "wrong-pass"), None).allowed
    assert len(calls) == 4  # user and password of every pair, even after a user mismatch


def test_no_auth_configured_allows_and_allow_list_filters():
    open_ = Authenticator()
    assert not open_.required and open_.check({"REMOTE_ADDR": "192.0.2.1"}, None).status == 200
    a = Authenticator(tokens=TOKENS, allow=parse_networks(["10.0.0.0/8", "192.0.2.7", "fd00::/8"]))
    ok = {"REMOTE_ADDR": "10.1.2.3", "HTTP_AUTHORIZATION": "Bearer first-token-aaaa"}
    assert a.check(ok, None).status == 200
    assert a.check({**ok, "REMOTE_ADDR": "::ffff:10.9.9.9"}, None).status == 200  # v4-mapped
    assert a.check({**ok, "REMOTE_ADDR": "fd12::1"}, None).status == 200
    assert a.check({**ok, "REMOTE_ADDR": "192.0.2.8"}, None).status == 403
    assert a.check({**ok, "REMOTE_ADDR": "not-an-ip"}, None).status == 403
    # The address check comes first: no hint about credentials to a refused network.
    assert a.check({"REMOTE_ADDR": "203.0.113.5"}, None).status == 403
    with pytest.raises(AuthConfigError, match="--allow 'ten'"):
        parse_networks(["ten"])
    assert client_address("::ffff:127.0.0.1") == ipaddress.ip_address("127.0.0.1")


def test_secrets_rules_and_scrubbing():
    with pytest.raises(AuthConfigError, match="at least 8"):
        Authenticator(tokens=["short"])
    with pytest.raises(AuthConfigError):
        Authenticator(basic=[("user", "short")])
    with pytest.raises(AuthConfigError):
        parse_basic("no-colon")
    assert parse_basic("u:p:q") == ("u", "p:q")
    a = Authenticator(tokens=TOKENS, basic=[("prtg", "password-123")])
    encoded = base64.b64encode(b"prtg:password-123").decode()
    text = a.scrubber.scrub(f"x first-token-aaaa y password-123 z {encoded}")
    assert text == "x *** y *** z ***"


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("[::1]", True),
                                       ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False),
                                       ("10.0.0.5", False), ("gpu-node-1", False)])
def test_loopback_detection(host, loop):
    assert is_loopback_host(host) is loop


def test_listen_policy():
    none = Authenticator()
    assert check_listen_policy("127.0.0.1", none, insecure=False) is None
    with pytest.raises(AuthConfigError, match="Refusing to listen on 0.0.0.0"):
        check_listen_policy("0.0.0.0", none, insecure=False)
    with pytest.raises(AuthConfigError):
        check_listen_policy("gpu-node-1", none, insecure=False)
    assert "WITHOUT authentication" in check_listen_policy("0.0.0.0", none, insecure=True)
    assert check_listen_policy("0.0.0.0", Authenticator(tokens=TOKENS), insecure=False) is None
