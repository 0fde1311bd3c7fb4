"""BrowserStack App Automate builds shared by every agent: one upload per (org, app version).

An agent asks for the build's app (`upload_lease`): it gets the bs:// id uploaded before, or the right to upload it
now (a lease, so two agents do not upload the same 100+ MB build at once; the other waits and then gets the id), and
reports the id it got (`record_upload`). BrowserStack deletes an app 30 days after its upload: an app older than
RENEW_AFTER is uploaded again before that. An agent that hears from BrowserStack that the app is gone says so
(`forget`), and the next run uploads it again."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from typing import Any

import msgspec

from qualgent.domain import Conflict
from qualgent.server.db.database import Database
from qualgent.server.db.sql import FLEET

RENEW_AFTER = dt.timedelta(days=27)  # BrowserStack keeps an app 30 days: three days of margin for long runs
UPLOAD_LEASE = dt.timedelta(minutes=15)  # an agent that died while uploading holds the build no longer
CUSTOM_ID_MAX = 100
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9._-]+")


class _App(msgspec.Struct, frozen=True):
    custom_id: str
    app_url: str | None
    uploaded_at: dt.datetime | None
    upload_until: dt.datetime | None  # another agent's upload lease
    now: dt.datetime  # the database's clock


def custom_id(org_id: str, app_version_id: str) -> str:
    """BrowserStack's custom_id for a build: A-Z a-z 0-9 . - _ only, at most 100 characters. A hash of the exact
    (org, version) keeps two that read alike after cleaning (or cutting) apart."""
    digest = hashlib.sha256(f"{org_id}\0{app_version_id}".encode()).hexdigest()[:10]
    readable = _NOT_ALLOWED.sub("_", f"qg-{org_id}-{app_version_id}")
    return f"{readable[: CUSTOM_ID_MAX - len(digest) - 1]}-{digest}"


async def upload_lease(db: Database, org_id: str, app_version_id: str) -> dict[str, Any]:
    """{"app_url"} when the build is uploaded and fresh; else {"upload_token"} to upload it now; else, while another
    agent uploads it, {"wait_seconds"}. Always {"custom_id"}."""
    key = {"org_id": org_id, "app_version_id": app_version_id}
    async with db.transaction() as tx:
        await tx.execute(FLEET.browserstack_app_row, {**key, "custom_id": custom_id(org_id, app_version_id)})
        app = await tx.one(FLEET.lock_browserstack_app, key, row=_App)
        answer: dict[str, Any] = {"custom_id": app.custom_id}
        if app.app_url and app.uploaded_at is not None and app.uploaded_at > app.now - RENEW_AFTER:
            return {**answer, "app_url": app.app_url, "uploaded_at": app.uploaded_at}
        if app.upload_until is not None and app.upload_until > app.now:
            left = (app.upload_until - app.now).total_seconds()
            return {**answer, "wait_seconds": min(5.0, max(0.5, left))}
        token = uuid.uuid4()
        await tx.execute(FLEET.lease_browserstack_upload, {**key, "token": token, "lease": UPLOAD_LEASE})
        return {**answer, "upload_token": token}


async def record_upload(
    db: Database, org_id: str, app_version_id: str, upload_token: uuid.UUID, app_url: str
) -> dict[str, Any]:
    params = {"org_id": org_id, "app_version_id": app_version_id, "token": upload_token, "app_url": app_url}
    row = await db.first(FLEET.record_browserstack_upload, params)
    if row is None:
        raise Conflict(
            f"the upload lease of {org_id} {app_version_id} is not this one (it lapsed and another agent took it)"
        )
    return row


async def forget(db: Database, org_id: str, app_version_id: str, app_url: str) -> bool:
    """BrowserStack no longer has this app: the next run uploads the build again."""
    params = {"org_id": org_id, "app_version_id": app_version_id, "app_url": app_url}
    return bool(await db.execute(FLEET.forget_browserstack_app, params))
