"""every change to api_tokens is announced on the `qualgent` channel, so servers may keep live tokens in memory

A server looked every request's token up in api_tokens: one indexed read, but a round trip to PostgreSQL and a
statement per request, a fifth of the server's work on an agent's progress report. Servers now keep the tokens they
have seen live (qualgent.queue.tokens.TokenCache) and forget them all when this trigger announces
`{"kind": "tokens"}`: after any UPDATE, DELETE or TRUNCATE of api_tokens, whoever made it (`qgjob token revoke`,
the API, or SQL by hand). A statement-level trigger, so a statement that revokes a thousand tokens sends one
notification, and PostgreSQL delivers it only if the transaction commits.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 14:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANNOUNCE = """
CREATE FUNCTION qualgent_announce_token_change() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('qualgent', '{"kind": "tokens"}');
    RETURN NULL;
END
$$
"""

TRIGGER = """
CREATE TRIGGER api_tokens_changed
AFTER UPDATE OR DELETE OR TRUNCATE ON api_tokens
FOR EACH STATEMENT EXECUTE FUNCTION qualgent_announce_token_change()
"""


def upgrade() -> None:
    op.execute(ANNOUNCE)
    op.execute(TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER api_tokens_changed ON api_tokens")
    op.execute("DROP FUNCTION qualgent_announce_token_change()")
