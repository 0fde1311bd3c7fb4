"""API tokens: made, listed and revoked by the admin. The secret is shown once, in the answer to POST."""

from __future__ import annotations

import uuid

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from qualgent.domain.roles import Role
from qualgent.server.api.deps import ServicesDep
from qualgent.server.api.schemas import IdentifierQuery, NewTokenOut, TokenIn, TokenOut, TokenRole, token_out
from qualgent.server.queue import tokens


class TokenController(Controller):
    path = "/tokens"
    tags = ["tokens"]

    @post(
        "",
        status_code=201,
        summary="Make a token: a submitter for one org, or an agent. The secret is shown only here",
    )
    async def create(self, services: ServicesDep, data: JSONBody[TokenIn]) -> NewTokenOut:
        made = await tokens.create(services.db, Role(data.role.value), data.org_id, data.name)
        enforced = services.settings.admin_token is not None
        return NewTokenOut(token=made.secret, enforced=enforced, **msgspec.structs.asdict(token_out(made.row)))

    @get("", summary="List tokens (never their secrets)")
    async def list_tokens(
        self,
        services: ServicesDep,
        role: FromQuery[TokenRole | None] = None,
        org_id: IdentifierQuery = None,
        include_revoked: FromQuery[bool] = False,
    ) -> list[TokenOut]:
        rows = await tokens.list_tokens(
            services.db, Role(role.value) if role else None, org_id, include_revoked=include_revoked
        )
        return [token_out(row) for row in rows]

    @delete("/{token_id:uuid}", status_code=200, summary="Revoke a token at once")
    async def revoke(self, services: ServicesDep, token_id: FromPath[uuid.UUID]) -> TokenOut:
        return token_out(await tokens.revoke(services.db, token_id, services.tokens))
