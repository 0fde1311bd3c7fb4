"""API tokens: made, listed, revoked and looked up. Only a token's SHA-256 is stored.

A token is `qgt_` followed by 32 random bytes (base64url): a hash that cannot be reversed or guessed,
so a plain SHA-256 is enough (no slow KDF is needed for a high-entropy secret), and looking a token up
by its hash leaks nothing that could be used to find another.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

import msgspec

from qualgent.domain import InvalidInput, NotFound
from qualgent.domain.roles import TOKEN_ROLES, Role
from qualgent.server.db.database import Database
from qualgent.server.db.sql import TOKENS
from qualgent.server.observability import metrics

PREFIX = "qgt_"
SHOWN_CHARACTERS = 12  # "qgt_" and 8 random characters: enough to tell tokens apart in a list
MAX_TOKEN_LENGTH = 256  # anything longer in an Authorization header is not one of ours


class Token(msgspec.Struct, frozen=True):
    """A token as listed (never its secret nor its hash)."""

    id: uuid.UUID
    role: str
    org_id: str | None
    name: str | None
    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class NewToken:
    secret: str
    row: Token


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


async def create(db: Database, role: Role, org_id: str | None, name: str | None) -> NewToken:
    if role not in TOKEN_ROLES:
        raise InvalidInput("the admin token is QUALGENT_ADMIN_TOKEN; tokens here are submitter or agent", field="role")
    if role is Role.SUBMITTER and org_id is None:
        raise InvalidInput("a submitter token acts for one org: give org_id", field="org_id")
    if role is Role.AGENT and org_id is not None:
        raise InvalidInput("an agent token serves every org: leave org_id out", field="org_id")
    secret = generate()
    async with db.transaction() as tx:
        if org_id is not None:
            await tx.execute(TOKENS.ensure_org, {"org_id": org_id})
        params = {
            "role": role.value,
            "org_id": org_id,
            "name": name,
            "prefix": secret[:SHOWN_CHARACTERS],
            "token_hash": digest(secret),
        }
        row = await tx.one(TOKENS.insert_token, params, row=Token)
    return NewToken(secret, row)


async def list_tokens(
    db: Database, role: Role | None = None, org_id: str | None = None, include_revoked: bool = False
) -> list[Token]:
    params = {"role": None if role is None else role.value, "org_id": org_id, "include_revoked": include_revoked}
    return await db.rows(TOKENS.list_tokens, params, row=Token)


async def revoke(db: Database, token_id: uuid.UUID, cache: TokenCache) -> Token:
    """Revoke at once (idempotent: revoking a revoked token keeps its first revocation time). `cache`, this
    process's, forgets what it holds before the answer goes out (required: a revoke that left it alone would be
    honoured here only once the trigger's notification lands); other servers' caches wait for that notification
    (milliseconds)."""
    row = await db.first(TOKENS.revoke_token, {"token_id": token_id}, row=Token)
    cache.forget()
    if row is None:
        raise NotFound(f"no token {token_id}", token_id=str(token_id))
    return row


async def is_live(db: Database, token_id: uuid.UUID) -> bool:
    """Whether this token exists and is not revoked, read from the table (an open event stream asks whenever
    api_tokens changed)."""
    return await db.value(TOKENS.token_live, {"token_id": token_id}) is not None


@dataclass(frozen=True, slots=True)
class LiveToken:
    id: uuid.UUID
    role: str
    org_id: str | None


async def _lookup(db: Database, hashed: str) -> LiveToken | None:
    """The live token with this hash, or None, read from the table."""
    row = await db.tuple_first(TOKENS.find_token, {"token_hash": hashed})  # (id, role, org_id, token_hash)
    if row is None or not same_secret(hashed, row[3]):
        return None
    return LiveToken(row[0], row[1], row[2])


class _Generations(Protocol):
    """What the cache needs of the LISTEN hub (qualgent.server.notify.Hub)."""

    connected: bool
    token_generation: int


class TokenCache:
    """The live tokens this server has looked up, so a request does not cost a read of api_tokens.

    An entry is trusted only while the hub's LISTEN connection is up and nothing has changed api_tokens since it was
    read: a trigger announces every change (api_tokens_changed, schema.sql), a revoke made here counts at once
    (`forget`), and a (re)connect counts too, as a notification may have been missed. So a revoked token
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

    async def find(self, db: Database, secret: str) -> LiveToken | None:
        """The live token with this secret, or None: from memory when that is still true, else from the table."""
        if not plausible(secret):
            return None
        return await self.find_digest(db, digest(secret))

    async def find_digest(self, db: Database, hashed: str) -> LiveToken | None:
        """`find` by the secret's SHA-256 (a dashboard session names its token by that,
        qualgent.server.api.sessions)."""
        generation = self._generation()
        usable = self._hub.connected
        entry = self._entries.get(hashed) if usable else None
        if entry is not None:
            cached, read_in, read_at = entry
            if read_in == generation and time.monotonic() - read_at < self._ttl:
                metrics.token_checked(from_memory=True)
                return cached
            del self._entries[hashed]
        token = await _lookup(db, hashed)
        if token is None:
            return None
        metrics.token_checked(from_memory=False)
        if usable and self._hub.connected and self._generation() == generation:
            if len(self._entries) >= self._max:
                self._entries.clear()  # a flood of distinct live tokens: start over rather than grow
            self._entries[hashed] = (token, generation, time.monotonic())
        return token
