"""The decisions of qualgent.server.api.auth that need no database: buckets, the route policy, binding."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException

from qualgent.domain.roles import Role
from qualgent.server.api.auth import (
    POLICY,
    Gate,
    Principal,
    RateLimiter,
    bind_refusal,
    is_loopback_host,
    policy,
    startup_notices,
)
from qualgent.server.queue import tokens
from qualgent.server.settings import Settings

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_the_rate_and_says_how_long_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0.0, "another key has its own bucket"
    clock.now += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(0.5)
    clock.now += 60
    assert [limiter.take("a") for _ in range(4)][-1] > 0, "a long pause refills up to the burst, no further"


def test_wait_needed_spends_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    assert limiter.wait_needed("a") == 0.0
    assert limiter.wait_needed("a") == 0.0
    assert limiter.take("a") == 0.0
    assert limiter.wait_needed("a") == pytest.approx(1.0)


def test_idle_buckets_are_dropped_when_there_are_too_many_keys() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, max_keys=10, clock=clock)
    for n in range(10):
        limiter.take(f"k{n}")
    clock.now += 10  # every bucket is full again: nothing to remember
    limiter.take("new")
    assert len(limiter._buckets) == 1


def test_unlisted_routes_are_the_admins_and_the_documents_are_open() -> None:
    assert policy("GET", "/api/something/new") == frozenset({Role.ADMIN})
    assert policy("GET", "/api/schema/openapi.json") is None
    assert policy("GET", "/api/health") is None
    assert policy("OPTIONS", "/api/jobs") is None
    assert Role.AGENT not in (POLICY[("POST", "/api/jobs")] or ())
    assert Role.SUBMITTER not in (POLICY[("POST", "/api/agents")] or ())


def test_a_submitter_is_kept_to_its_org() -> None:
    submitter = Principal(Role.SUBMITTER, "acme", "t1")
    assert submitter.org_filter(None) == "acme"
    assert submitter.org_filter("acme") == "acme"
    with pytest.raises(PermissionDeniedException):
        submitter.org_filter("other")
    with pytest.raises(PermissionDeniedException) as refused:
        submitter.require_org("other", "[3].org_id")
    assert refused.value.extra == [{"key": "[3].org_id", "message": "outside this token's org"}]
    assert submitter.sees("acme")
    assert not submitter.sees("other")
    admin = Principal(Role.ADMIN)
    assert admin.org_filter(None) is None
    assert admin.sees("other")


@pytest.mark.parametrize(
    ("host", "token", "insecure", "refused"),
    [
        ("127.0.0.1", None, False, False),
        ("localhost", None, False, False),
        ("::1", None, False, False),
        ("127.0.0.2", None, False, False),
        ("0.0.0.0", None, False, True),  # noqa: S104 - the address being refused
        ("10.1.2.3", None, False, True),
        ("example.com", None, False, True),
        ("0.0.0.0", "secret", False, False),  # noqa: S104
        ("0.0.0.0", None, True, False),  # noqa: S104
    ],
)
def test_only_loopback_is_served_without_an_admin_token(
    host: str, token: str | None, insecure: bool, refused: bool
) -> None:
    settings = Settings(admin_token=token, insecure=insecure, host=host)
    reason = bind_refusal(host, settings)
    assert (reason is not None) == refused
    if reason:
        assert "QUALGENT_ADMIN_TOKEN" in reason
        assert "--insecure" in reason


def test_start_up_says_whether_authentication_is_on() -> None:
    assert "authentication OFF" in startup_notices(Settings())[0][1]
    assert "INSECURE" in startup_notices(Settings(host="0.0.0.0", insecure=True))[0][1]  # noqa: S104
    assert "authentication on" in startup_notices(Settings(admin_token="x"))[0][1]
    assert not is_loopback_host("0.0.0.0")  # noqa: S104


def test_secrets_are_compared_in_constant_time_and_hashed() -> None:
    secret = tokens.generate()
    assert secret.startswith("qgt_")
    assert tokens.generate() != secret
    assert tokens.same_secret(secret, secret)
    assert not tokens.same_secret(secret, secret[:-1])
    assert not tokens.same_secret("é" * 3, "abc"), "non-ASCII input is compared, not an error"
    assert len(tokens.digest(secret)) == 64


def _scope(path: str, token: str | None = None, address: str = "203.0.113.9") -> dict[str, Any]:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return {"type": "http", "method": "GET", "path": path, "path_template": path, "headers": headers,
            "client": (address, 5000)}  # fmt: skip


async def test_an_address_sending_bad_tokens_is_slowed_before_anything_is_looked_up() -> None:
    gate = Gate(Settings(admin_token="admin", rate_limit=1.0, rate_burst=2))
    for _ in range(2):
        with pytest.raises(NotAuthorizedException):
            await gate.admit(_scope("/api/jobs", "wrong"), services=None)  # type: ignore[arg-type]
    with pytest.raises(HTTPException) as limited:
        await gate.admit(_scope("/api/jobs", "wrong"), services=None)  # type: ignore[arg-type]
    assert limited.value.status_code == 429
    assert limited.value.headers == {"Retry-After": "1"}
    # Another address, and this host's loopback, are not held back by it.
    with pytest.raises(NotAuthorizedException):
        await gate.admit(_scope("/api/jobs", "wrong", "198.51.100.1"), services=None)  # type: ignore[arg-type]
    for _ in range(5):
        with pytest.raises(NotAuthorizedException):
            await gate.admit(_scope("/api/jobs", None, "127.0.0.1"), services=None)  # type: ignore[arg-type]


async def test_the_admin_token_is_its_own_bucket_and_open_routes_need_none() -> None:
    gate = Gate(Settings(admin_token="admin", rate_limit=1.0, rate_burst=1))
    assert (await gate.admit(_scope("/api/jobs", "admin"), services=None)) == Principal(Role.ADMIN)  # type: ignore[arg-type]
    with pytest.raises(HTTPException):
        await gate.admit(_scope("/api/jobs", "admin"), services=None)  # type: ignore[arg-type]
    assert await gate.admit(_scope("/api/health", None, "198.51.100.7"), services=None) is None  # type: ignore[arg-type]


async def test_without_an_admin_token_everyone_acts_as_the_admin() -> None:
    gate = Gate(Settings(rate_limit=0))
    assert await gate.admit(_scope("/api/tokens", "anything"), services=None) == Principal(Role.ADMIN)  # type: ignore[arg-type]
