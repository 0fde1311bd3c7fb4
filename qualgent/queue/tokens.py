"""API tokens: made, listed, revoked and looked up. Only a token's SHA-256 is stored.

A token is `qgt_` followed by 32 random bytes (base64url): a hash that cannot be reversed or guessed,
so a plain SHA-256 is enough (no slow KDF is needed for a high-entropy secret), and looking a token up
by its hash leaks nothing that could be used to find another.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncEngine

from qualgent.db.raw import Direct
from qualgent.domain import InvalidInput, NotFound
from qualgent.domain.roles import TOKEN_ROLES, Role

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
# Every authenticated request runs this: one statement on the hot path's pool (qualgent.db.raw.Direct), not a
# SQLAlchemy connection, which cost the server several times more CPU than the indexed read itself.
_FIND = "SELECT id, role, org_id, token_hash FROM api_tokens WHERE token_hash = %(token_hash)s AND revoked_at IS NULL"
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


async def revoke(engine: AsyncEngine, token_id: uuid.UUID) -> RowMapping:
    """Revoke at once (idempotent: revoking a revoked token keeps its first revocation time)."""
    async with engine.begin() as conn:
        row = (await conn.execute(_REVOKE, {"token_id": token_id})).mappings().first()
    if row is None:
        raise NotFound(f"no token {token_id}", token_id=str(token_id))
    return row


@dataclass(frozen=True, slots=True)
class LiveToken:
    id: uuid.UUID
    role: str
    org_id: str | None


async def find(direct: Direct, secret: str) -> LiveToken | None:
    """The live token with this secret, or None."""
    if not plausible(secret):
        return None
    hashed = digest(secret)
    row = await direct.first(_FIND, {"token_hash": hashed})
    if row is None or not same_secret(hashed, row[3]):
        return None
    return LiveToken(row[0], row[1], row[2])
