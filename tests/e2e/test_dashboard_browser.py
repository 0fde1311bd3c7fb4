"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright for Python) against a
real `qgjob server` and `qgjob agent`: log in, watch a job finish without a reload, cancel from the page, a
submitter kept to its org, and nothing fetched from anywhere but the server.

With QUALGENT_SCREENSHOTS=<dir> set, the run saves the overview and a failed job's page there as PNG (the
README shows the ones in docs/)."""

from __future__ import annotations

import os
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.harness import Server, agent, wait_for

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ADMIN = "e2e-dashboard-admin-token"

RUNNER = """\
#!{python}
# Stands in for a test runner: `run <build> <path>` prints like Playwright, sleeps for *slow* paths,
# and fails (exit 1) for *fail* paths with an assertion error and its location.
import sys, time
if sys.argv[1] == "install":
    sys.exit(0)
build, path = sys.argv[2], sys.argv[3]
print(f"Running 3 tests using 1 worker ({{path}} on build {{build}})")
time.sleep(2.5 if "slow" in path else 0.05)
if "fail" in path:
    print("  1) [android] > checkout > pays with a saved card")
    print("     Error: expect(locator).toBeVisible() failed")
    print("     Locator: getByText('Payment accepted')")
    print("     Expected: visible; Received: <element(s) not found>; Timeout: 5000ms")
    print(f"       at {{path}}:42:7")
    print("  1 failed, 2 passed (14.2s)")
    sys.exit(1)
print("  3 passed (9.8s)")
"""


def chromium() -> Path | None:
    """Debian's chromium, or the browser QUALGENT_CHROMIUM names (e.g. the Chrome of GitHub's runners)."""
    named = os.environ.get("QUALGENT_CHROMIUM")
    found = Path(named) if named else CHROMIUM if CHROMIUM.exists() else None
    return found if found is not None and found.exists() else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()
    if executable is None:
        named = os.environ.get("QUALGENT_CHROMIUM")
        pytest.skip(
            f"QUALGENT_CHROMIUM names {named}, which does not exist"
            if named
            else "Debian's `chromium` package is not installed (apt-get install -y chromium)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the PyPI package `playwright` is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(executable), headless=True)
        yield launched
        launched.close()


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    env = {"QUALGENT_ADMIN_TOKEN": ADMIN, "QUALGENT_LEASE_SECONDS": "3"}
    running = Server(tmp_path / "server.log", database_url=db_url, env=env).start()
    yield running
    running.stop()


@pytest.fixture
def runner(tmp_path: Path) -> Path:
    script = tmp_path / "runner"
    script.write_text(textwrap.dedent(RUNNER.format(python=sys.executable)))
    script.chmod(0o755)
    return script


class Session:
    """A browser context on the server, recording the host of every request it makes."""

    def __init__(self, browser: Any, server: Server, width: int = 1280, height: int = 860) -> None:
        self.base = f"http://127.0.0.1:{server.port}"
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.hosts: list[str] = []
        self.context.on("request", lambda request: self.hosts.append(urlsplit(request.url).netloc))
        self.page = self.context.new_page()

    def goto(self, path: str) -> Any:
        return self.page.goto(self.base + path)

    def log_in(self, token: str) -> None:
        self.goto("/")
        assert urlsplit(self.page.url).path == "/login"
        self.page.get_by_label("Token").fill(token)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(self.base + "/")

    def only_the_server_was_asked(self) -> None:
        assert self.hosts, "the page made requests"
        assert set(self.hosts) == {f"127.0.0.1:{self.base.rsplit(':', 1)[1]}"}, set(self.hosts)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def session(browser: Any, server: Server) -> Iterator[Session]:
    opened = Session(browser, server)
    yield opened
    opened.close()


def api(server: Server, token: str = ADMIN) -> httpx.Client:
    return httpx.Client(base_url=server.api_url + "/", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def submit(
    server: Server, *paths: str, org: str = "acme", build: str = "v1", target: str = "emulator"
) -> list[dict[str, Any]]:
    with api(server) as client:
        body = [{"org_id": org, "app_version_id": build, "test_path": path, "target": target} for path in paths]
        response = client.post("jobs", json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


def token(server: Server, role: str, org: str | None = None) -> str:
    with api(server) as client:
        response = client.post("tokens", json={"role": role, **({"org_id": org} if org else {})})
        assert response.status_code == 201, response.text
        return str(response.json()["token"])


def status_of(server: Server, job_id: str) -> str:
    with api(server) as client:
        return str(client.get(f"jobs/{job_id}").json()["status"])


def run_agent(server: Server, runner: Path, tmp_path: Path) -> Any:
    return agent(server.api_url, runner, tmp_path / "agent.log", env={"QGJOB_TOKEN": token(server, "agent")})


def test_a_job_turns_completed_on_its_page_without_a_reload(
    session: Session, server: Server, runner: Path, tmp_path: Path
) -> None:
    session.log_in(ADMIN)
    (job,) = submit(server, "tests/slow-login.spec.ts")
    session.goto(f"/jobs/{job['id']}")
    page = session.page
    assert page.locator("#live-region .status-line .badge").first.inner_text() == "pending"
    page.wait_for_selector("#live-state.on")  # the event stream is open
    page.evaluate("window.qualgentMarker = 'same document'")
    with run_agent(server, runner, tmp_path):
        page.wait_for_selector("#live-region .status-line .s-running", timeout=30_000)
        page.wait_for_selector("#live-region .status-line .s-completed", timeout=30_000)
    assert page.evaluate("window.qualgentMarker") == "same document", "the page changed without a reload"
    assert "3 passed" in page.locator("pre.output").inner_text()
    assert page.get_by_role("button", name="Re-run").is_visible()
    session.only_the_server_was_asked()


def test_cancel_from_the_page_and_in_bulk(session: Session, server: Server) -> None:
    session.log_in(ADMIN)
    (job,) = submit(server, "tests/cancel-me.spec.ts")
    build = submit(server, "tests/a.spec.ts", "tests/b.spec.ts", build="v9")
    session.goto(f"/jobs/{job['id']}")
    session.page.get_by_role("button", name="Cancel").click()
    session.page.wait_for_selector("#live-region .status-line .s-cancelled")
    assert status_of(server, job["id"]) == "cancelled"
    session.goto("/jobs?app_version_id=v9")
    button = session.page.get_by_role("button", name="Cancel every pending or running job matching this filter")
    session.page.once("dialog", lambda dialog: dialog.dismiss())
    button.click()  # asked first, and dismissed: had it gone through, the next would cancel 0 jobs
    session.page.once("dialog", lambda dialog: dialog.accept())
    button.click()
    session.page.wait_for_url(re.compile(r"done=cancelled-2"))
    assert session.page.get_by_role("status").filter(has_text="Cancelled 2 jobs.").is_visible()
    assert {status_of(server, j["id"]) for j in build} == {"cancelled"}
    session.only_the_server_was_asked()


def test_a_submitter_cannot_see_another_orgs_job(session: Session, server: Server) -> None:
    (mine,) = submit(server, "tests/mine.spec.ts", org="acme")
    (theirs,) = submit(server, "tests/theirs.spec.ts", org="globex")
    session.log_in(token(server, "submitter", "acme"))
    assert "of org acme" in session.page.locator("h1").inner_text()
    session.goto("/jobs")
    assert session.page.get_by_role("link", name="tests/mine.spec.ts").is_visible()
    assert session.page.get_by_text("tests/theirs.spec.ts").count() == 0
    response = session.goto(f"/jobs/{theirs['id']}")
    assert response.status == 404
    assert session.page.locator("h1").inner_text() == "Not found"
    assert session.page.get_by_text("theirs").count() == 0
    assert session.goto(f"/jobs/{mine['id']}").status == 200
    assert session.page.get_by_role("link", name="Agents").count() == 0, "agents are the admin's"
    session.only_the_server_was_asked()


def test_an_agent_token_cannot_log_in(session: Session, server: Server) -> None:
    session.goto("/login")
    session.page.get_by_label("Token").fill(token(server, "agent"))
    session.page.get_by_role("button", name="Log in").click()
    assert "agent token cannot open the dashboard" in session.page.get_by_role("alert").inner_text()
    assert urlsplit(session.page.url).path == "/login"


def test_overview_and_a_failed_job_at_desktop_and_phone_width(
    browser: Any, session: Session, server: Server, runner: Path, tmp_path: Path
) -> None:
    jobs = submit(server, "tests/login.spec.ts", "tests/search.spec.ts", "tests/checkout-fail.spec.ts")
    submit(server, "tests/onboarding.spec.ts", "tests/settings.spec.ts", org="globex", build="2.4.1")
    session.log_in(ADMIN)
    page = session.page
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    with run_agent(server, runner, tmp_path):
        wait_for(lambda: all(status_of(server, j["id"]) != "pending" for j in jobs), what="the agent took the jobs")
        wait_for(lambda: status_of(server, jobs[2]["id"]) == "failed", what="the failing test")
        submit(server, *(f"tests/slow-flow-{n}.spec.ts" for n in range(4)), build="v2")
        submit(server, "tests/camera.spec.ts", "tests/nfc.spec.ts", org="globex", build="2.5.0", target="device")
        # The page was loaded before any of it: the running group of v2 appears by itself.
        page.wait_for_selector("#live-region a:text-is('v2')", timeout=30_000)
        assert page.locator("#live-region progress").count() >= 1
        shots = os.environ.get("QUALGENT_SCREENSHOTS")
        if shots:
            session.goto("/")  # the current figures, not those of the last live refresh (at most 1 s old)
            page.wait_for_selector("#live-state.on")
            page.screenshot(path=str(Path(shots) / "dashboard-overview.png"), full_page=True)
        session.goto(f"/jobs/{jobs[2]['id']}")
    assert page.locator("#live-region .status-line .s-failed").is_visible()
    assert "toBeVisible() failed" in page.locator("pre.output").inner_text()
    if shots:
        page.screenshot(path=str(Path(shots) / "dashboard-failed-job.png"), full_page=True)
    phone = Session(browser, server, width=390, height=844)
    try:
        phone.log_in(ADMIN)
        for path in ("/", "/jobs", f"/jobs/{jobs[2]['id']}", "/orgs/acme"):
            phone.goto(path)
            overflow = phone.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} scrolls sideways at phone width by {overflow}px"
        phone.only_the_server_was_asked()
    finally:
        phone.close()
    session.only_the_server_was_asked()
