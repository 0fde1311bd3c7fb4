"""`qgjob agent --appwright` with a REAL Playwright test runner (tests/e2e/playwright_project): one run per group,
each test file a job reported as it ends, outcomes, attempts, infrastructure errors, cancels and bad input."""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import QGJOB, Cli, Server, agent_process, clean_env, wait_for
from tests.e2e.playwright import project_copy

pytestmark = pytest.mark.e2e

INSTALL = """\
#!{python}
import sys
with open({log!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return project_copy(tmp_path / "project")


@contextlib.contextmanager
def appwright_agent(
    api_url: str, project: Path, log_path: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    args = [
        "--appwright", "--project", "android", "--config", "playwright.config.ts", "--workdir", str(project), *extra,
    ]  # fmt: skip
    with agent_process(api_url, log_path, args, env) as process:
        yield process


def install_script(where: Path) -> tuple[Path, Path]:
    log = where / "installs.log"
    script = where / "install"
    script.write_text(INSTALL.format(python=sys.executable, log=str(log)))
    script.chmod(0o755)
    return script, log


def job(cli: Cli, job_id: str) -> dict[str, Any]:
    return cli.json("status", "--job-id", job_id)  # type: ignore[no-any-return]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_group_is_one_playwright_run_and_each_file_is_reported_as_it_ends(
    server: Server, cli: Cli, project: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    script, installs = install_script(tmp_path)
    runs = tmp_path / "runs.log"
    (tmp_path / "outside.spec.ts").write_text("")
    paths = [
        "specs/a_pass.spec.ts",
        "specs/b_fail.spec.ts",
        "specs/c_flaky.spec.ts",
        "specs/d_empty.spec.ts",
        "specs/missing.spec.ts",
        "../outside.spec.ts",
        "specs/z_slow.spec.ts",
    ]
    jobs = {j["test_path"]: j["id"] for j in cli.submit(*paths, test_retries="1", max_attempts="3")}
    env = {"QUALGENT_FIXTURE_STATE": str(state), "QUALGENT_FIXTURE_RUN_LOG": str(runs)}
    with appwright_agent(
        server.api_url, project, tmp_path / "agent.log", "--install", f"{script} {{app_version_id}}",
        "--build", "builds/{app_version_id}.apk", env=env,
    ):  # fmt: skip
        # Live: the first files are final while the run still waits in its last file (for the gate).
        wait_for(
            lambda: job(cli, jobs["specs/z_slow.spec.ts"])["status"] == "running",
            timeout=60,
            what="the run in its last file",
        )
        passed = job(cli, jobs["specs/a_pass.spec.ts"])
        assert passed["status"] == "completed", passed
        assert job(cli, jobs["specs/b_fail.spec.ts"])["status"] == "failed"
        assert job(cli, jobs["specs/z_slow.spec.ts"])["status"] == "running"
        (state / "gate").write_text("open")
        wait_for(
            lambda: all(job(cli, j)["status"] in ("completed", "failed") for j in jobs.values()),
            timeout=60,
            what="every job final",
        )
    assert passed["attempts"] == 1
    assert not passed["flaky"]
    failed = job(cli, jobs["specs/b_fail.spec.ts"])
    assert failed["status"] == "failed"
    assert failed["result"]["error_location"] == "specs/b_fail.spec.ts:8"
    assert "the receipt is shown" in failed["result"]["error"]
    assert failed["attempts"] == 2  # the failed try and its retry within the run, each an attempt
    history = cli.json("status", "--job-id", jobs["specs/b_fail.spec.ts"])
    assert history["status"] == "failed"
    flaky = job(cli, jobs["specs/c_flaky.spec.ts"])
    assert (flaky["status"], flaky["flaky"], flaky["attempts"]) == ("completed", True, 2)
    empty = job(cli, jobs["specs/d_empty.spec.ts"])
    assert empty["status"] == "failed"
    assert "holds no test" in empty["result"]["error"]
    missing = job(cli, jobs["specs/missing.spec.ts"])
    assert missing["status"] == "failed"
    assert "no test file specs/missing.spec.ts" in missing["result"]["error"]
    outside = job(cli, jobs["../outside.spec.ts"])
    assert outside["status"] == "failed"
    assert "outside the agent's --workdir" in outside["result"]["error"]
    assert job(cli, jobs["specs/z_slow.spec.ts"])["status"] == "completed"
    # One install and one Playwright run (its global setup ran once) for the whole group; the build's path given.
    assert lines(installs) == ["v1"]
    (run,) = lines(runs)
    assert run.endswith(f" {project / 'builds' / 'v1.apk'}")
    # The CLI shows where the failure is.
    shown = cli.run("status", "--job-id", jobs["specs/b_fail.spec.ts"])
    assert "specs/b_fail.spec.ts:8" in shown.stdout


def test_a_global_setup_failure_is_an_infrastructure_error_retried_with_a_new_run(
    server: Server, cli: Cli, project: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.log"
    env = {"QUALGENT_FIXTURE_SETUP_FAILS": str(tmp_path / "setup-failed"), "QUALGENT_FIXTURE_RUN_LOG": str(runs)}
    (submitted,) = cli.submit("specs/a_pass.spec.ts", max_attempts="3")
    with appwright_agent(server.api_url, project, tmp_path / "agent.log", env=env):
        done = wait_for(
            lambda: (j := job(cli, submitted["id"]))["status"] == "completed" and j, timeout=90, what="the retry"
        )
    assert done["attempts"] == 2
    history = cli.json("status", "--job-id", submitted["id"])
    assert history["status"] == "completed"
    assert len(lines(runs)) == 1  # the failed run's global setup threw before it logged


def test_cancelling_every_job_of_a_run_kills_the_run(server: Server, cli: Cli, project: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (submitted,) = cli.submit("specs/z_slow.spec.ts")
    with appwright_agent(
        server.api_url, project, tmp_path / "agent.log", env={"QUALGENT_FIXTURE_STATE": str(state)}
    ) as agent:
        wait_for(lambda: job(cli, submitted["id"])["status"] == "running", timeout=60, what="the slow file running")
        assert cli.run("cancel", "--job-id", submitted["id"]).returncode == 0
        log = tmp_path / "agent.log"
        wait_for(lambda: "every unfinished job of the run was cancelled" in log.read_text(), what="the run killed")
        # The run is gone: no Playwright process of this project is left.
        wait_for(lambda: not _playwright_processes(project), what="no Playwright process left")
        assert agent.poll() is None
    assert job(cli, submitted["id"])["status"] == "cancelled"


def _playwright_processes(project: Path) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
            if "playwright" in cmdline and cwd == str(project):
                found.append(int(pid))
    return found


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "nope.config.ts"], "no Playwright config"),
        (["--project", "desktop"], 'Project(s) "desktop" not found'),
    ],
)
def test_the_agent_refuses_to_start_on_bad_settings(
    server: Server, project: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    base = ["--appwright", "--project", "android", "--config", "playwright.config.ts", "--workdir", str(project)]
    done = subprocess.run(
        [QGJOB, "agent", *base, *args], capture_output=True, text=True, timeout=60,
        env=clean_env(QGJOB_API_URL=server.api_url),
    )  # fmt: skip
    assert done.returncode == 2, done
    # rich's error box folds a long line (here, one with the project's path): read its words, not its layout
    said = " ".join(re.sub("[\u2500-\u257f]", " ", done.stderr).split())
    assert message in said, done.stderr


def test_the_agent_refuses_a_workdir_without_playwright(server: Server, tmp_path: Path) -> None:
    (tmp_path / "appwright.config.ts").write_text("export default {};\n")
    done = subprocess.run(
        [QGJOB, "agent", "--appwright", "--project", "android", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, env=clean_env(QGJOB_API_URL=server.api_url),
    )  # fmt: skip
    assert done.returncode == 2, done
    assert "no playwright in" in done.stderr
    assert "npm ci" in done.stderr


class FakeBrowserstack:
    """Stands in for App Automate's upload endpoint on 127.0.0.1: checks the basic auth and the multipart fields, and
    answers a new bs:// id per upload."""

    def __init__(self) -> None:
        self.uploads: list[dict[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "Basic " + base64.b64encode(b"qa-user:qa-key").decode()
                if self.path != "/app-automate/upload" or self.headers.get("Authorization") != expected:
                    self._answer(401, {"error": "unauthorized"})
                    return
                message = email.message_from_bytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body,
                    policy=email.policy.HTTP,
                )
                fields = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
                file_part, custom = fields.get("file"), fields.get("custom_id")
                if file_part is None or custom is None:
                    self._answer(400, {"error": "file and custom_id required"})
                    return
                content = file_part.get_payload(decode=True)
                fake.uploads.append({"custom_id": custom.get_content().strip(), "size": str(len(content))})
                url = f"bs://app{len(fake.uploads)}"
                self._answer(200, {"app_url": url, "custom_id": custom.get_content().strip(), "shareable_id": "x"})

            def _answer(self, status: int, body: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_browserstack_build_is_uploaded_once_for_every_agent(
    server: Server, cli: Cli, project: Path, tmp_path: Path
) -> None:
    fake = FakeBrowserstack()
    (project / "builds").mkdir()
    (project / "builds" / "v7.apk").write_bytes(b"APK" * 1000)
    runs = tmp_path / "runs.log"
    env = {
        "BROWSERSTACK_USERNAME": "qa-user",
        "BROWSERSTACK_ACCESS_KEY": "qa-key",
        "QUALGENT_BROWSERSTACK_API_URL": fake.url,
        "QUALGENT_FIXTURE_RUN_LOG": str(runs),
    }
    args = ("--target", "browserstack", "--build", "builds/{app_version_id}.apk", "--max-groups", "1")
    try:
        for name in ("first", "second"):  # two agent processes, one after the other: the server remembers
            (submitted,) = cli.submit("specs/a_pass.spec.ts", app="v7", target="browserstack")
            with appwright_agent(server.api_url, project, tmp_path / f"{name}.log", *args, env=env) as agent:
                assert agent.wait(90) == 0
            assert job(cli, submitted["id"])["status"] == "completed"
    finally:
        fake.close()
    assert len(fake.uploads) == 1
    assert fake.uploads[0]["size"] == "3000"
    custom_id = fake.uploads[0]["custom_id"]
    assert custom_id.startswith("qg-acme-v7-")
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,100}", custom_id)
    assert [line.split()[-1] for line in lines(runs)] == ["bs://app1", "bs://app1"]


def test_browserstack_without_credentials_is_refused(server: Server, project: Path) -> None:
    done = subprocess.run(
        [QGJOB, "agent", "--appwright", "--project", "android", "--config", "playwright.config.ts",
         "--workdir", str(project), "--target", "browserstack", "--build", "app.apk"],
        capture_output=True, text=True, timeout=60, env=clean_env(QGJOB_API_URL=server.api_url),
    )  # fmt: skip
    assert done.returncode == 2, done
    assert "BROWSERSTACK_USERNAME" in done.stderr


def test_a_test_past_its_timeout_fails_where_it_waited(server: Server, cli: Cli, project: Path, tmp_path: Path) -> None:
    (submitted,) = cli.submit("specs/e_timeout.spec.ts", test_timeout="2")
    with appwright_agent(server.api_url, project, tmp_path / "agent.log"):
        done = wait_for(lambda: (j := job(cli, submitted["id"]))["status"] == "failed" and j, timeout=60, what="fail")
    assert "Test timeout of 2000ms exceeded" in done["result"]["error"]
    assert done["result"]["error_location"].startswith("specs/e_timeout.spec.ts:")
    assert done["attempts"] == 1


def test_the_bench_measures_one_run_against_a_run_per_file(project: Path) -> None:
    done = subprocess.run(
        [QGJOB, "bench", "--appwright", str(project), "--group-size", "3", "--rounds", "1", "--json"],
        capture_output=True, text=True, timeout=110, env=clean_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["files"] == 3
    assert len(figures["rounds"]) == 1
    assert figures["one_run_seconds"] > 0
    assert figures["per_test_runs_seconds"] > 0
    assert figures["one_run_vs_per_test_runs"] == figures["per_test_runs_seconds"] / figures["one_run_seconds"]


def test_max_tests_per_run_cuts_a_group_into_runs_after_one_install(
    server: Server, cli: Cli, project: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "gate").write_text("open")
    script, installs = install_script(tmp_path)
    runs = tmp_path / "runs.log"
    submitted = cli.submit("specs/a_pass.spec.ts", "specs/z_slow.spec.ts")
    env = {"QUALGENT_FIXTURE_STATE": str(state), "QUALGENT_FIXTURE_RUN_LOG": str(runs)}
    with appwright_agent(
        server.api_url, project, tmp_path / "agent.log", "--install", f"{script} {{app_version_id}}",
        "--max-tests-per-run", "1", "--max-groups", "1", env=env,
    ) as agent:  # fmt: skip
        assert agent.wait(90) == 0
    assert [job(cli, j["id"])["status"] for j in submitted] == ["completed", "completed"]
    assert lines(installs) == ["v1"]
    assert len(lines(runs)) == 2


def test_an_app_browserstack_deleted_is_uploaded_again_and_the_file_retried(
    server: Server, cli: Cli, project: Path, tmp_path: Path
) -> None:
    fake = FakeBrowserstack()
    (project / "builds").mkdir()
    (project / "builds" / "v8.apk").write_bytes(b"APK")
    env = {
        "BROWSERSTACK_USERNAME": "qa-user",
        "BROWSERSTACK_ACCESS_KEY": "qa-key",
        "QUALGENT_BROWSERSTACK_API_URL": fake.url,
        "QUALGENT_FIXTURE_GONE_APP": "bs://app1",
    }
    (submitted,) = cli.submit("specs/f_browserstack.spec.ts", app="v8", target="browserstack", max_attempts="3")
    try:
        with appwright_agent(
            server.api_url, project, tmp_path / "agent.log", "--target", "browserstack",
            "--build", "builds/{app_version_id}.apk", env=env,
        ):  # fmt: skip
            done = wait_for(
                lambda: (j := job(cli, submitted["id"]))["status"] in ("completed", "failed") and j, timeout=90
            )
    finally:
        fake.close()
    assert (done["status"], done["attempts"]) == ("completed", 2)
    first = done["attempt_history"][0]
    assert first["outcome"] == "infra_error"
    assert "BROWSERSTACK_APP_DELETED" in first["error"]
    assert len(fake.uploads) == 2  # the deleted app was forgotten and the build uploaded again
