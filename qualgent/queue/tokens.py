"""API tokens: made, listed, revoked and looked up. Only a token's SHA-256 is stored.

A token is `qgt_` followed by 32 random bytes (base64url): a hash that cannot be reversed or guessed,
so a plain SHA-256 is enough (no slow KDF is needed for a high-entropy secret), and looking a token up
by its hash leaks nothing that could be used to find another.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncEngine

from qualgent.db.raw import Direct
from qualgent.domain import InvalidInput, NotFound
from qualgent.domain.roles import TOKEN_ROLES, Role
from qualgent.observability import metrics

PREFIX = "qgt_"
SHOWN_CHARACTERS = 12  # "qgt_" and 8 random characters: enough to tell tokens apart in a list
MAX_TOKEN_LENGTH = 256  # anything longer in an Authorization header is not one of ours

_COLUMNS = "id, role, org_id, name, prefix, created_at, revoked_at"
_INSERT = text(
    "INSERT INTO api_tokens (role, org_id, name, prefix, token_hash) "
    "VALUES (:role, :org_id, :name, :prefix, :token_hash) "
    "RETURNING id, role, org_id, name, prefix, created_at, revoked_at"
)
_REVOKE = text(
    "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = :token_id "
    "RETURNING id, role, org_id, name, prefix, created_at, revoked_at"
)
# A token the cache cannot vouch for is read with this: one statement on the hot path's pool (qualgent.db.raw.Direct),
# not a SQLAlchemy connection, which cost the server several times more CPU than the indexed read itself.
_FIND = "SELECT id, role, org_id, token_hash FROM api_tokens WHERE token_hash = %(token_hash)s AND revoked_at IS NULL"
_LIVE = "SELECT 1 FROM api_tokens WHERE id = %(token_id)s AND revoked_at IS NULL"
_ENSURE_ORG = text("INSERT INTO orgs (id) VALUES (:org_id) ON CONFLICT DO NOTHING")


@dataclass(frozen=True, slots=True)
class NewToken:
    secret: str
    row: RowMapping


def generate() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def plausible(secret: str) -> bool:
    """Whether a string could be one of our tokens at all (nothing else is looked up)."""
    return secret.startswith(PREFIX) and len(secret) <= MAX_TOKEN_LENGTH


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", errors="surrogatepass")).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison, so the time a refusal takes says nothing about how close a guess was."""
    return hmac.compare_digest(given.encode(errors="surrogatepass"), expected.encode(errors="surrogatepass"))


async def create(engine: AsyncEngine, role: Role, org_id: str | None, name: str | None) -> NewToken:
    if role not in TOKEN_ROLES:
        raise InvalidInput("the admin token is QUALGENT_ADMIN_TOKEN; tokens here are submitter or agent", field="role")
    if role is Role.SUBMITTER and org_id is None:
        raise InvalidInput("a submitter token acts for one org: give org_id", field="org_id")
    if role is Role.AGENT and org_id is not None:
        raise InvalidInput("an agent token serves every org: leave org_id out", field="org_id")
    secret = generate()
    async with engine.begin() as conn:
        if org_id is not None:
            await conn.execute(_ENSURE_ORG, {"org_id": org_id})
        params = {
            "role": role.value,
            "org_id": org_id,
            "name": name,
            "prefix": secret[:SHOWN_CHARACTERS],
            "token_hash": digest(secret),
        }
        row = (await conn.execute(_INSERT, params)).mappings().one()
    return NewToken(secret, row)


async def list_tokens(
    engine: AsyncEngine, role: Role | None = None, org_id: str | None = None, include_revoked: bool = False
) -> list[RowMapping]:
    where: list[str] = []
    params: dict[str, object] = {}
    if role is not None:
        where.append("role = :role")
        params["role"] = role.value
    if org_id is not None:
        where.append("org_id = :org_id")
        params["org_id"] = org_id
    if not include_revoked:
        where.append("revoked_at IS NULL")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    query = text(f"SELECT {_COLUMNS} FROM api_tokens {clause} ORDER BY created_at, id")  # noqa: S608 - fixed text
    async with engine.connect() as conn:
        return list((await conn.execute(query, params)).mappings())


async def revoke(engine: AsyncEngine, token_id: uuid.UUID, cache: TokenCache) -> RowMapping:
    """Revoke at once (idempotent: revoking a revoked token keeps its first revocation time). `cache`, this
    process's, forgets what it holds before the answer goes out (required: a revoke that left it alone would be
    honoured here only once the trigger's notification lands); other servers' caches wait for that notification
    (milliseconds)."""
    async with engine.begin() as conn:
        row = (await conn.execute(_REVOKE, {"token_id": token_id})).mappings().first()
    cache.forget()
    if row is None:
        raise NotFound(f"no token {token_id}", token_id=str(token_id))
    return row


async def is_live(direct: Direct, token_id: uuid.UUID) -> bool:
    """Whether this token exists and is not revoked, read from the table (an open event stream asks whenever
    api_tokens changed)."""
    return await direct.first(_LIVE, {"token_id": token_id}) is not None


@dataclass(frozen=True, slots=True)
class LiveToken:
    id: uuid.UUID
    role: str
    org_id: str | None


async def _lookup(direct: Direct, hashed: str) -> LiveToken | None:
    """The live token with this hash, or None, read from the table."""
    row = await direct.first(_FIND, {"token_hash": hashed})
    if row is None or not same_secret(hashed, row[3]):
        return None
    return LiveToken(row[0], row[1], row[2])


class _Generations(Protocol):
    """What the cache needs of the LISTEN hub (qualgent.notify.Hub)."""

    connected: bool
    token_generation: int


class TokenCache:
    """The live tokens this server has looked up, so a request does not cost a read of api_tokens.

    An entry is trusted only while the hub's LISTEN connection is up and nothing has changed api_tokens since it was
    read: a trigger announces every change (migration 0012), a revoke made here counts at once (`forget`), and a
    (re)connect counts too, as a notification may have been missed. So a revoked token
    is refused by this server from its next request, and by every other server as soon as the notification reaches
    it, milliseconds after the revoke commits. An entry is also read again after `ttl` seconds, which bounds what a
    LISTEN connection that died without anyone noticing (until its next probe) could leave behind. A lookup that
    overlapped a change is not kept. Unknown secrets are never kept: the rate limiter deals with those."""

    def __init__(self, hub: _Generations, ttl: float = 10.0, max_entries: int = 10_000) -> None:
        self._hub = hub
        self._ttl = ttl
        self._max = max_entries
        self._entries: dict[str, tuple[LiveToken, tuple[int, int], float]] = {}  # hash -> token, generation, read at
        self._forgotten = 0  # this process's own changes, beside the hub's count of everyone's

    def forget(self) -> None:
        """api_tokens changed in this process: nothing read before is trusted (lookups in flight included)."""
        self._forgotten += 1
        self._entries.clear()

    def _generation(self) -> tuple[int, int]:
        return self._hub.token_generation, self._forgotten

    async def find(self, direct: Direct, secret: str) -> LiveToken | None:
        """The live token with this secret, or None: from memory when that is still true, else from the table."""
        if not plausible(secret):
            return None
        return await self.find_digest(direct, digest(secret))

    async def find_digest(self, direct: Direct, hashed: str) -> LiveToken | None:
        """`find` by the secret's SHA-256 (a dashboard session names its token by that, qualgent.api.sessions)."""
        generation = self._generation()
        usable = self._hub.connected
        entry = self._entries.get(hashed) if usable else None
        if entry is not None:
            cached, read_in, read_at = entry
            if read_in == generation and time.monotonic() - read_at < self._ttl:
                metrics.token_checked(from_memory=True)
                return cached
            del self._entries[hashed]
        token = await _lookup(direct, hashed)
        if token is None:
            return None
        metrics.token_checked(from_memory=False)
        if usable and self._hub.connected and self._generation() == generation:
            if len(self._entries) >= self._max:
                self._entries.clear()  # a flood of distinct live tokens: start over rather than grow
            self._entries[hashed] = (token, generation, time.monotonic())
        return token
