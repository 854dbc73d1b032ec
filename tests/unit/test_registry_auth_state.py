"""The I/O-free auth state machine: challenges, scopes, token requests, caching, refresh."""

from __future__ import annotations

import base64
import json

import pytest

from lamina.errors import AuthError
from lamina.registry.auth import (
    AuthState,
    Challenge,
    Credential,
    Scope,
    TokenRequest,
    parse_challenges,
)

HUB = (
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
    'scope="repository:library/busybox:pull"'
)
PULL = Scope.repository("me/app", "pull")
PUSH = Scope.repository("me/app", "pull", "push")
PASSWORD = "pa55-word-xyz"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_parse_docker_hub_challenge() -> None:
    [c] = parse_challenges(HUB)
    assert c.scheme == "bearer" and c.realm == "https://auth.docker.io/token"
    assert c.params["service"] == "registry.docker.io"
    assert c.params["scope"] == "repository:library/busybox:pull"


def test_parse_several_challenges_and_quoting() -> None:
    got = parse_challenges('Basic realm="a \\"quoted\\" realm", Bearer realm=https://t/x,service=s')
    assert got == [
        Challenge("basic", {"realm": 'a "quoted" realm'}),
        Challenge("bearer", {"realm": "https://t/x", "service": "s"}),
    ]
    assert parse_challenges("") == []


def test_scope_parse_with_port_and_coverage() -> None:
    scope = Scope.parse("repository:localhost:5000/foo:pull,push")
    assert scope == Scope.repository("localhost:5000/foo", "push", "pull")
    assert str(scope) == "repository:localhost:5000/foo:pull,push"
    assert PUSH.covers(PULL) and not PULL.covers(PUSH)
    assert not PUSH.covers(Scope.repository("other", "pull"))
    assert Scope.repository("me/app", "*").covers(PUSH)


def bearer_state(cred: Credential | None = None, clock: Clock | None = None) -> AuthState:
    state = AuthState("r.example", cred, clock=clock or Clock())
    assert state.on_unauthorized('Bearer realm="https://auth.example/token",service="reg"', None)
    return state


def token_body(value: str, expires_in: int = 300) -> bytes:
    return json.dumps({"token": value, "expires_in": expires_in}).encode()


def test_anonymous_state_sends_nothing_until_challenged() -> None:
    state = AuthState("r.example")
    assert state.authorization([PULL]) is None and state.token_request([PULL]) is None


def test_bearer_flow_with_credentials_and_cache() -> None:
    clock = Clock()
    state = bearer_state(Credential("bob", PASSWORD), clock)
    req = state.token_request([PULL])
    assert req is not None and req.method == "GET" and req.url == "https://auth.example/token"
    assert dict(req.params) == {"service": "reg", "account": "bob", "scope": str(PULL)}
    assert req.authorization == "Basic " + base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
    assert PASSWORD not in repr(req) and "Basic" not in repr(req)
    state.accept_token(req, 200, token_body("tok-1"))
    assert state.authorization([PULL]) == "Bearer tok-1"
    assert state.token_request([PULL]) is None
    push_req = state.token_request([PUSH])  # pull token does not cover push
    assert push_req is not None
    state.accept_token(push_req, 200, token_body("tok-2"))
    assert state.authorization([PULL]) in ("Bearer tok-1", "Bearer tok-2")
    clock.now += 300  # both expire (10 s margin)
    assert state.authorization([PULL]) is None and state.token_request([PULL]) is not None
    assert "tok-" not in repr(state.__dict__.get("_tokens"))


def test_rejected_token_is_dropped_and_refetched() -> None:
    state = bearer_state()
    req = state.token_request([PULL])
    assert req is not None and req.authorization is None
    state.accept_token(req, 200, token_body("stale"))
    assert state.on_unauthorized('Bearer realm="https://auth.example/token"', "Bearer stale")
    assert state.authorization([PULL]) is None and state.token_request([PULL]) is not None


def test_challenge_scope_is_added_to_the_request() -> None:
    state = AuthState("r.example")
    state.on_unauthorized(HUB, None)
    req = state.token_request([PULL])
    assert req is not None
    scopes = [v for k, v in req.params if k == "scope"]
    assert scopes == ["repository:library/busybox:pull", "repository:me/app:pull"]


def test_basic_challenge() -> None:
    anonymous = AuthState("r.example")
    assert anonymous.on_unauthorized('Basic realm="r"', None) is False
    state = AuthState("r.example", Credential("bob", PASSWORD))
    assert state.on_unauthorized('Basic realm="r"', None) is True
    header = state.authorization([PULL])
    assert header is not None and header.startswith("Basic ")
    assert state.token_request([PULL]) is None


def test_identity_token_uses_oauth2_refresh_grant() -> None:
    state = bearer_state(Credential(identity_token="refresh-me"))
    req = state.token_request([PULL])
    assert req is not None and req.method == "POST"
    form = dict(req.params)
    assert form["grant_type"] == "refresh_token" and form["refresh_token"] == "refresh-me"
    assert form["scope"] == str(PULL) and form["service"] == "reg"


def test_credentials_never_go_to_a_plain_http_realm() -> None:
    state = AuthState(
        "r.example", Credential("bob", PASSWORD), plain_http_ok=lambda h: h.startswith("127.")
    )
    state.on_unauthorized('Bearer realm="http://auth.example/token"', None)
    with pytest.raises(AuthError, match="plain http") as info:
        state.token_request([PULL])
    assert PASSWORD not in str(info.value)
    state.on_unauthorized('Bearer realm="http://127.0.0.1:9/token"', None)
    assert state.token_request([PULL]) is not None


@pytest.mark.parametrize(
    "body",
    [b"<html>nope</html>", b"{}", b'{"token": ""}', b'{"token": "a b"}', b"[1]", b'{"token": 5}'],
)
def test_garbage_token_responses(body: bytes) -> None:
    state = bearer_state()
    req = state.token_request([PULL])
    assert req is not None
    with pytest.raises(AuthError, match="invalid response"):
        state.accept_token(req, 200, body)


def test_token_endpoint_refusal_is_one_line_without_secrets() -> None:
    state = bearer_state(Credential("bob", PASSWORD))
    req = state.token_request([PULL])
    assert req is not None
    with pytest.raises(AuthError) as info:
        state.accept_token(req, 401, b"denied " + PASSWORD.encode())
    assert info.value.status == 401 and "\n" not in str(info.value)
    assert PASSWORD not in str(info.value) and "lamina login r.example" in (info.value.hint or "")


def test_secrets_and_reprs() -> None:
    cred = Credential("bob", PASSWORD, identity_token="idt-secret")
    assert PASSWORD not in repr(cred) and "idt-secret" not in repr(cred)
    state = bearer_state(cred)
    req = TokenRequest("GET", "https://auth.example/token", (), frozenset({PULL}))
    state.accept_token(req, 200, token_body("tok-secret"))
    assert set(state.secrets()) == {PASSWORD, "idt-secret", "tok-secret"}
