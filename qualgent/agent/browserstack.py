"""Uploading a group's build to BrowserStack App Automate once per (org, app version), for every agent.

The server keeps the bs:// id (qualgent/server/queue/browserstack.py) and hands out one upload lease at a time; this
agent
uploads only when it holds the lease (`POST <api>/app-automate/upload`, multipart `file` and `custom_id`, basic
auth), and otherwise waits for the agent that does. AppWright itself uploads a local buildPath on every run
(its issue 58); given the bs:// id in QUALGENT_BUILD_PATH, it uploads nothing."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import httpx

from qualgent.agent.client import ServerConflict, ServerRejected

if TYPE_CHECKING:
    from qualgent.agent.loop import Agent

log = logging.getLogger("qualgent.agent")

DEFAULT_API_URL = "https://api-cloud.browserstack.com"
UPLOAD_TIMEOUT_SECONDS = 1800.0  # builds of 100+ MB over a slow link
WAIT_FOR_OTHER_SECONDS = 1800.0
APP_GONE_MARKER = "BROWSERSTACK_APP_DELETED"


class UploadError(Exception):
    """The build could not be uploaded (or its id had)."""


@dataclass(frozen=True)
class Account:
    api_url: str
    username: str
    access_key: str


async def app_url(agent: Agent, claim: dict[str, Any], build: Path) -> str:
    """The bs:// id of the claim's build: from the server when some agent uploaded it, else uploaded now."""
    settings = agent.config.appwright
    account = settings.browserstack_account if settings is not None else None
    if account is None:
        raise UploadError("BROWSERSTACK_USERNAME and BROWSERSTACK_ACCESS_KEY are not set")
    key = {"org_id": claim["org_id"], "app_version_id": claim["app_version_id"]}
    path = f"/agents/{agent.agent_id}/browserstack-apps"
    deadline = asyncio.get_running_loop().time() + WAIT_FOR_OTHER_SECONDS
    while True:
        try:
            lease = await agent.client.call("POST", f"{path}/upload-lease", key, retry_for=agent.lease_seconds)
        except (ConnectionError, ServerRejected, ServerConflict) as err:
            raise UploadError(f"the server could not say whether the build is uploaded: {err}") from None
        if lease.get("app_url"):
            log.info("build %s is on BrowserStack as %s", claim["app_version_id"], lease["app_url"])
            return str(lease["app_url"])
        if lease.get("upload_token"):
            break
        if asyncio.get_running_loop().time() > deadline:
            raise UploadError("another agent has been uploading this build for too long")
        await asyncio.sleep(float(lease.get("wait_seconds") or 1.0))
    url = await upload(account, build, lease["custom_id"])
    try:
        await agent.client.call(
            "PUT", path, {**key, "upload_token": lease["upload_token"], "app_url": url}, retry_for=agent.lease_seconds
        )
    except (ConnectionError, ServerRejected, ServerConflict) as err:
        log.warning("uploaded %s as %s but the server did not record it: %s", build, url, err)
    return url


async def upload(account: Account, build: Path, custom_id: str) -> str:
    try:
        content = _open(build)
    except OSError as err:
        raise UploadError(f"cannot read the build {build}: {err.strerror or err}") from None
    log.info("uploading %s to BrowserStack (custom_id %s)", build, custom_id)
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(UPLOAD_TIMEOUT_SECONDS, connect=30.0)) as http:
            with content:
                response = await http.post(
                    f"{account.api_url.rstrip('/')}/app-automate/upload",
                    auth=(account.username, account.access_key),
                    files={"file": (build.name, content, "application/octet-stream")},
                    data={"custom_id": custom_id},
                )
    except httpx.HTTPError as err:
        raise UploadError(f"{type(err).__name__}: {err}") from None
    if response.status_code != 200:
        raise UploadError(f"BrowserStack answered {response.status_code}: {response.text[:500]}")
    try:
        url = response.json()["app_url"]
    except (ValueError, KeyError, TypeError):
        raise UploadError(f"BrowserStack's answer has no app_url: {response.text[:500]}") from None
    if not isinstance(url, str) or not url.startswith("bs://"):
        raise UploadError(f"BrowserStack's app_url is not a bs:// id: {url!r}")
    log.info("uploaded %s: %s", build, url)
    return url


def _open(build: Path) -> BinaryIO:
    return build.open("rb")  # (sent by httpx in chunks as the upload goes)


async def forget(agent: Agent, claim: dict[str, Any], url: str) -> None:
    """BrowserStack says the app is gone (deleted after 30 days): the next run uploads it again."""
    body = {"org_id": claim["org_id"], "app_version_id": claim["app_version_id"], "app_url": url}
    try:
        await agent.client.call("POST", f"/agents/{agent.agent_id}/browserstack-apps/gone", body, retry_for=10)
        log.warning("BrowserStack no longer has %s: the next run uploads the build again", url)
    except (ConnectionError, ServerRejected, ServerConflict) as err:
        log.warning("could not tell the server that %s is gone: %s", url, err)
