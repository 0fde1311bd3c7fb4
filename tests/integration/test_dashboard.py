"""The web dashboard's routes over real HTTP (no browser): sessions, CSRF, org isolation and bulk actions.
The browser tests are tests/e2e/test_dashboard_browser.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from qualgent.server.settings import Settings
from tests.integration.conftest import Api, serve_api

pytestmark = pytest.mark.anyio

ADMIN = "admin-secret-for-dashboard-tests"


def csrf_of(html: str) -> str:
    match = re.search(r'name="_csrf" value="([^"]+)"', html)
    assert match, "the page has a form with a CSRF token"
    return match.group(1)


async def submit(api: Api, org: str = "acme", build: str = "v1", path: str = "tests/a.spec.ts", **extra: Any) -> Any:
    body = {"org_id": org, "app_version_id": build, "test_path": path, **extra}
    response = await api.client.post("/api/jobs", json=body, headers=api.client.headers)
    assert response.status_code == 201, response.text
    return response.json()


# --- authentication off: loopback only, everyone is the admin ---------------------------------------------------


async def test_pages_render_and_assets_are_served_locally(api: Api) -> None:
    job = await submit(api)
    for path in ("/", "/jobs", f"/jobs/{job['id']}", f"/groups/{job['group_id']}", "/orgs", "/orgs/acme", "/agents"):
        response = await api.client.get(path)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert re.findall(r'(?:src|href)="(https?:)?//', response.text) == [], "no asset from another host"
    page = (await api.client.get(f"/jobs/{job['id']}")).text
    assert "tests/a.spec.ts" in page
    assert "0 groups ahead in the emulator queue" in page
    hostile = await submit(api, org="o r?g#1", path="tests/<script>alert(1)</script>.spec.ts")
    shown = (await api.client.get(f"/jobs/{hostile['id']}")).text
    assert "<script>alert(1)" not in shown
    assert "&lt;script&gt;alert(1)" in shown
    assert 'href="/orgs/o%20r%3Fg%231"' in shown
    assert (await api.client.get("/orgs/o%20r%3Fg%231")).status_code == 200
    assert 'id="cancel"' in page
    for asset in ("/static/dashboard.css", "/static/dashboard.js", "/static/favicon.svg"):
        response = await api.client.get(asset)
        assert response.status_code == 200, asset
        body = response.content.replace(b"http://www.w3.org/2000/svg", b"")  # a namespace name, never fetched
        assert b"http://" not in body, asset
        assert b"https://" not in body, asset


async def test_a_foreign_host_name_is_refused_without_authentication(api: Api) -> None:
    """DNS rebinding: a page of evil.example resolved to 127.0.0.1 must not read the dashboard."""
    response = await api.client.get("/", headers={"Host": "evil.example:3000"})
    assert response.status_code == 403
    assert "this host only" in response.text
    assert (await api.client.get("/", headers={"Host": "localhost:3000"})).status_code == 200


async def test_forms_need_the_csrf_token(api: Api) -> None:
    job = await submit(api)
    await api.client.get("/jobs")  # sets the CSRF cookie
    refused = await api.client.post(f"/jobs/{job['id']}/cancel", data={})
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    forged = await api.client.post(f"/jobs/{job['id']}/cancel", data={"_csrf": "x" * 43})
    assert forged.status_code == 403
    token = csrf_of((await api.client.get(f"/jobs/{job['id']}")).text)
    other_site = await api.client.post(
        f"/jobs/{job['id']}/cancel", data={"_csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert other_site.status_code == 403
    assert (await api.call("GET", f"/jobs/{job['id']}"))["status"] == "pending", "nothing changed"
    done = await api.client.post(f"/jobs/{job['id']}/cancel", data={"_csrf": token})
    assert done.status_code == 303
    assert (await api.call("GET", f"/jobs/{job['id']}"))["status"] == "cancelled"
    again = await api.client.post(f"/jobs/{job['id']}/cancel", data={"_csrf": token})
    assert again.status_code == 409
    assert "already cancelled" in again.text
    rerun = await api.client.post(f"/jobs/{job['id']}/retry", data={"_csrf": token})
    assert rerun.status_code == 303
    assert (await api.call("GET", f"/jobs/{job['id']}"))["status"] == "pending"


async def test_bad_filters_get_a_clear_page(api: Api) -> None:
    for query in ("status=bogus", "target=moon", "group_id=nope", "before=12"):
        response = await api.client.get(f"/jobs?{query}")
        assert response.status_code == 400, query
        assert "text/html" in response.headers["content-type"]
    missing = await api.client.get("/jobs/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404


async def test_jobs_page_filters_and_searches(api: Api) -> None:
    await submit(api, path="tests/login.spec.ts")
    await submit(api, path="tests/checkout.spec.ts", build="v2")
    await submit(api, org="globex", path="tests/login_50%.spec.ts")
    page = (await api.client.get("/jobs", params={"q": "LOGIN"})).text
    assert "tests/login.spec.ts" in page
    assert "login_50%" in page
    assert "checkout" not in page
    page = (await api.client.get("/jobs", params={"q": "50%"})).text
    assert "login_50%" in page
    assert "tests/login.spec.ts" not in page, "% is searched for, not a wildcard"
    page = (await api.client.get("/jobs", params={"app_version_id": "v2"})).text
    assert "checkout" in page
    assert "login" not in page
    page = (await api.client.get("/jobs", params={"org_id": "globex"})).text
    assert "login_50%" in page
    assert "checkout" not in page


async def test_bulk_cancel_and_retry_from_the_jobs_page(api: Api) -> None:
    first = [await submit(api, path=f"tests/{n}.spec.ts") for n in range(3)]
    other = await submit(api, build="v2")
    token = csrf_of((await api.client.get("/jobs", params={"app_version_id": "v1"})).text)
    done = await api.client.post("/jobs/cancel", data={"_csrf": token, "app_version_id": "v1", "org_id": "acme"})
    assert done.status_code == 303
    assert "cancelled-3" in done.headers["location"]
    statuses = {(await api.call("GET", f"/jobs/{j['id']}"))["status"] for j in first}
    assert statuses == {"cancelled"}
    assert (await api.call("GET", f"/jobs/{other['id']}"))["status"] == "pending"
    retried = await api.client.post("/jobs/retry", data={"_csrf": token, "app_version_id": "v1"})
    assert "retried-3" in retried.headers["location"]
    assert {(await api.call("GET", f"/jobs/{j['id']}"))["status"] for j in first} == {"pending"}
    unnarrowed = await api.client.post("/jobs/cancel", data={"_csrf": token, "status": "pending"})
    assert unnarrowed.status_code == 400
    assert (await api.call("GET", f"/jobs/{other['id']}"))["status"] == "pending"


# --- the bulk API ---------------------------------------------------------------------------------------------


async def test_bulk_api_cancels_a_build_and_retries_its_failed_jobs(api: Api) -> None:
    jobs = [await submit(api, path=f"tests/{n}.spec.ts") for n in range(4)]
    kept = await submit(api, org="globex")
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    await api.run(agent, claim, jobs[0]["id"], exit_code=1)  # a test failure: final
    await api.run(agent, claim, jobs[1]["id"], exit_code=0)
    cancelled = await api.call("POST", "/jobs/cancel", {"org_id": "acme", "app_version_id": "v1"})
    assert cancelled["count"] == 2
    assert set(cancelled["job_ids"]) == {jobs[2]["id"], jobs[3]["id"]}
    assert (await api.call("GET", f"/jobs/{kept['id']}"))["status"] == "pending"
    retried = await api.call("POST", "/jobs/retry", {"app_version_id": "v1", "status": ["failed"]})
    assert retried["job_ids"] == [jobs[0]["id"]]
    assert (await api.call("GET", f"/jobs/{jobs[0]['id']}"))["status"] == "pending"
    assert (await api.call("GET", f"/jobs/{jobs[1]['id']}"))["status"] == "completed"
    by_default = await api.call("POST", "/jobs/retry", {"org_id": "acme"})
    assert set(by_default["job_ids"]) == {jobs[2]["id"], jobs[3]["id"]}, "failed and cancelled by default"
    await api.call("POST", "/jobs/cancel", {"status": ["pending"]}, expect=400)
    await api.call("POST", "/jobs/cancel", {"org_id": "acme", "status": ["failed"]}, expect=400)
    await api.call("POST", "/jobs/retry", {"org_id": "acme", "status": ["running"]}, expect=400)
    await api.call("POST", "/jobs/cancel", {"org_id": "acme", "bogus": 1}, expect=400)


async def test_bulk_cancel_of_a_running_group(api: Api) -> None:
    jobs = [await submit(api, path=f"tests/{n}.spec.ts") for n in range(3)]
    agent = await api.register()
    claim = await api.claim(agent)
    assert claim is not None
    ref = {"group_id": claim["group_id"], "token": claim["token"]}
    await api.call("POST", f"/agents/{agent}/jobs/{jobs[0]['id']}/start", ref)
    assert "its group is running on an agent" in (await api.client.get(f"/jobs/{jobs[1]['id']}")).text
    group_page = (await api.client.get(f"/groups/{claim['group_id']}")).text
    assert "Cancel this group" in group_page
    done = await api.call("POST", "/jobs/cancel", {"group_id": claim["group_id"]})
    assert done["count"] == 3
    beat = await api.call("PUT", f"/agents/{agent}/heartbeat", {"claims": [ref]})
    assert jobs[0]["id"] in beat["cancelled_job_ids"], "the agent learns it must stop the running test"


# --- authentication on ----------------------------------------------------------------------------------------


@pytest.fixture
def secured(settings: Settings) -> Settings:
    return replace(settings, admin_token=ADMIN, rate_limit=0)


@pytest.fixture
async def secure_api(secured: Settings) -> AsyncIterator[Api]:
    async with serve_api(secured) as served:
        served.client.headers["Authorization"] = f"Bearer {ADMIN}"
        yield served


async def new_token(api: Api, role: str, org: str | None = None) -> str:
    body = {"role": role, **({"org_id": org} if org else {})}
    return str((await api.call("POST", "/tokens", body, expect=201))["token"])


async def browser(api: Api) -> httpx.AsyncClient:
    """A client with no bearer token: only what a browser has, its cookies."""
    return httpx.AsyncClient(base_url=str(api.client.base_url), timeout=30)


async def log_in(client: httpx.AsyncClient, token: str, expect: int = 303, next_path: str = "/") -> httpx.Response:
    form = await client.get("/login", params={"next": next_path})
    assert form.status_code == 200
    assert 'name="token"' in form.text
    response = await client.post("/login", data={"_csrf": csrf_of(form.text), "token": token, "next": next_path})
    assert response.status_code == expect, response.text
    return response


async def test_pages_ask_for_a_login_and_open_a_session(secure_api: Api) -> None:
    async with await browser(secure_api) as client:
        first = await client.get("/jobs?status=pending")
        assert first.status_code == 302
        assert first.headers["location"] == "/login?next=%2Fjobs%3Fstatus%3Dpending"
        assert (await client.get("/api/jobs")).status_code == 401
        await log_in(client, "qgt_" + "x" * 43, expect=401)
        done = await log_in(client, ADMIN, next_path="/jobs?status=pending")
        assert done.headers["location"] == "/jobs?status=pending"
        cookie = done.headers["set-cookie"]
        assert "qualgent_session=" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie.replace("Lax", "lax")
        assert ADMIN not in cookie, "the token itself is not in the cookie"
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/agents")).status_code == 200
        assert (await client.get("/api/jobs")).status_code == 401, "the cookie is no API credential"
        page = await client.get("/")
        out = await client.post("/logout", data={"_csrf": csrf_of(page.text)})
        assert out.status_code == 303
        assert (await client.get("/")).status_code == 302


async def test_login_refuses_agent_tokens_forged_cookies_and_foreign_redirects(secure_api: Api) -> None:
    agent_token = await new_token(secure_api, "agent")
    async with await browser(secure_api) as client:
        refused = await log_in(client, agent_token, expect=401)
        assert "agent token cannot" in refused.text
        assert "qualgent_session" not in refused.headers.get("set-cookie", "")
        client.cookies.set("qualgent_session", "eyJzIjoiYWRtaW4iLCJlIjo5OTk5OTk5OTk5fQ.forged")
        assert (await client.get("/")).status_code == 302
        done = await log_in(client, ADMIN, next_path="//evil.example/")
        assert done.headers["location"] == "/"
    async with await browser(secure_api) as client:
        form = await client.get("/login")
        no_csrf = await client.post("/login", data={"token": ADMIN})
        assert no_csrf.status_code == 403, "a login form posted from elsewhere is refused"
        assert form.status_code == 200


async def test_a_submitter_sees_its_org_only(secure_api: Api) -> None:
    mine = await submit(secure_api, org="acme", path="tests/mine.spec.ts")
    theirs = await submit(secure_api, org="globex", path="tests/theirs.spec.ts")
    token = await new_token(secure_api, "submitter", "acme")
    async with await browser(secure_api) as client:
        await log_in(client, token)
        listing = (await client.get("/jobs")).text
        assert "tests/mine.spec.ts" in listing
        assert "tests/theirs.spec.ts" not in listing
        assert (await client.get(f"/jobs/{mine['id']}")).status_code == 200
        assert (await client.get(f"/jobs/{theirs['id']}")).status_code == 404
        assert (await client.get(f"/groups/{theirs['group_id']}")).status_code == 404
        assert (await client.get("/orgs/globex")).status_code == 404
        assert (await client.get("/jobs", params={"org_id": "globex"})).status_code == 403
        assert (await client.get("/agents")).status_code == 403
        assert (await client.get("/orgs")).headers["location"] == "/orgs/acme"
        overview = (await client.get("/")).text
        assert "of org acme" in overview
        token_field = csrf_of(listing)
        assert (await client.post(f"/jobs/{theirs['id']}/cancel", data={"_csrf": token_field})).status_code == 404
        cross = await client.post("/jobs/cancel", data={"_csrf": token_field, "org_id": "globex"})
        assert cross.status_code == 403
        tier = await client.post("/orgs/acme/tier", data={"_csrf": token_field, "tier": "premium"})
        assert tier.status_code == 403
        everything = await client.post("/jobs/cancel", data={"_csrf": token_field, "app_version_id": "v1"})
        assert "cancelled-1" in everything.headers["location"]
    assert (await secure_api.call("GET", f"/jobs/{theirs['id']}"))["status"] == "pending"
    assert (await secure_api.call("GET", f"/jobs/{mine['id']}"))["status"] == "cancelled"


async def test_the_admin_changes_a_tier(secure_api: Api) -> None:
    await submit(secure_api, org="acme")
    async with await browser(secure_api) as client:
        await log_in(client, ADMIN)
        page = await client.get("/orgs/acme")
        assert 'name="tier"' in page.text
        done = await client.post("/orgs/acme/tier", data={"_csrf": csrf_of(page.text), "tier": "premium"})
        assert done.status_code == 303
        bad = await client.post("/orgs/acme/tier", data={"_csrf": csrf_of(page.text), "tier": "gold"})
        assert bad.status_code == 400
    assert (await secure_api.call("GET", "/orgs/acme"))["tier"] == "premium"


async def test_the_event_stream_takes_the_session_and_a_revoked_token_ends_it(secure_api: Api) -> None:
    created = await secure_api.call("POST", "/tokens", {"role": "submitter", "org_id": "acme"}, expect=201)
    job = await submit(secure_api, org="acme")
    async with await browser(secure_api) as client:
        await log_in(client, created["token"])
        async with client.stream("GET", "/api/events", params={"job_id": job["id"]}) as stream:
            assert stream.status_code == 200
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    assert job["id"] in line
                    break
        other = await client.get("/api/events", params={"org_id": "globex"})
        assert other.status_code == 403
        await secure_api.call("DELETE", f"/tokens/{created['id']}")
        assert (await client.get("/")).status_code == 302, "a revoked token's session ends"
        assert (await client.get("/api/events")).status_code == 401


async def test_the_admin_caps_a_target_from_the_overview_and_a_submitter_cannot(secure_api: Api) -> None:
    created = await secure_api.call("POST", "/tokens", {"role": "submitter", "org_id": "acme"}, expect=201)
    async with await browser(secure_api) as client:
        await log_in(client, ADMIN)
        page = await client.get("/")
        assert "Targets and capacity caps" in page.text
        assert 'name="max_running"' in page.text
        done = await client.post("/targets/browserstack/cap", data={"_csrf": csrf_of(page.text), "max_running": "5"})
        assert done.status_code == 303
        for bad in ("-1", "five", "1e3"):
            refused = await client.post(
                "/targets/browserstack/cap", data={"_csrf": csrf_of(page.text), "max_running": bad}
            )
            assert refused.status_code == 400, bad
        assert (await client.post("/targets/mainframe/cap", data={"_csrf": csrf_of(page.text)})).status_code == 400
    caps = {t["target"]: t["max_running"] for t in await secure_api.call("GET", "/targets")}
    assert caps["browserstack"] == 5
    async with await browser(secure_api) as client:
        await log_in(client, created["token"])
        page = await client.get("/")
        assert "Targets and capacity caps" not in page.text
        denied = await client.post("/targets/browserstack/cap", data={"_csrf": csrf_of(page.text), "max_running": ""})
        assert denied.status_code == 403
    assert {t["target"]: t["max_running"] for t in await secure_api.call("GET", "/targets")}["browserstack"] == 5
    async with await browser(secure_api) as client:
        await log_in(client, ADMIN)
        page = await client.get("/")
        cleared = await client.post("/targets/browserstack/cap", data={"_csrf": csrf_of(page.text), "max_running": ""})
        assert cleared.status_code == 303
    assert {t["target"]: t["max_running"] for t in await secure_api.call("GET", "/targets")}["browserstack"] is None
