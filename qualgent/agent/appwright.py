"""`qgjob agent --appwright`: one Playwright run per claimed group (or per `--max-tests-per-run` files), each
test file one job, reported live from qualgent's own Playwright reporter (playwright_reporter.cjs).

How a run goes (docs/appwright.md):
- `<playwright> test <paths...> --config C --reporter <ours> --project P --retries R --timeout MS
  --pass-with-no-tests`, in the workdir: paths first (Playwright's `--project` takes every word after it).
- The reporter connects to a Unix socket the agent listens on (QUALGENT_REPORTER_SOCKET) and sends JSON lines. A
  job starts with its file's first test; it ends when each of its tests ended for good (as expected, or out of
  retries): all passed -> passed (flaky when a retry was needed: the failed tries are attempts of their own); any
  failed or timed out -> test failed, with the first error and its `file:line`; a file the run never finished
  (global setup failed, the run crashed, was killed or ran past its watchdog) -> infrastructure error, retried by
  the server with backoff; a file that holds no test -> failed, saying so.
- A failed try that Playwright will retry closes the job's attempt and opens the next one in place (`retrying`):
  the retry reuses the run, its install and its device session.
- Cancels: a cancelled job's result is discarded by the server; when every unfinished job of the run is
  cancelled, the run's process tree is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qualgent.agent import browserstack
from qualgent.agent.client import ServerConflict, ServerRejected
from qualgent.agent.executor import Run, RunResult
from qualgent.agent.templates import CommandTemplate
from qualgent.aio import cancel_and_wait

if TYPE_CHECKING:
    from qualgent.agent.loop import Agent, _Current
    from qualgent.agent.reporter import Reporter

log = logging.getLogger("qualgent.agent")

REPORTER = "playwright_reporter.cjs"
WATCHDOG_MARGIN_SECONDS = 120.0  # the run's start-up, global setup and teardown, beyond its tests' own timeouts
CHECK_TIMEOUT_SECONDS = 120.0
CANCEL_POLL_SECONDS = 20.0
FIRST_ERROR_CHARS = 4000


class AppwrightError(ValueError):
    """A setting `qgjob agent --appwright` cannot start with."""


@dataclass(frozen=True)
class AppwrightSettings:
    project: str
    workdir: Path
    config: Path
    playwright: tuple[str, ...]
    build: CommandTemplate | None = None
    max_tests_per_run: int | None = None
    browserstack_account: browserstack.Account | None = None

    @classmethod
    def make(
        cls,
        project: str,
        workdir: str | None,
        config: str,
        playwright: str,
        build: CommandTemplate | None,
        max_tests_per_run: int | None,
        account: browserstack.Account | None = None,
    ) -> AppwrightSettings:
        """Settings checked on their own (no run): a missing workdir, config or Playwright install is named."""
        import shlex

        where = Path(workdir or ".").resolve()
        if not where.is_dir():
            raise AppwrightError(f"--workdir {where} is not a directory")
        config_path = (where / config).resolve()
        if not config_path.is_file():
            raise AppwrightError(f"no Playwright config {config_path} (--config {config}, relative to --workdir)")
        try:
            words = tuple(shlex.split(playwright))
        except ValueError as err:
            raise AppwrightError(f"cannot split --playwright {playwright!r}: {err}") from None
        if not words:
            raise AppwrightError("--playwright is empty")
        _check_playwright_installed(where, words)
        return cls(project, where, config_path, words, build, max_tests_per_run, account)

    def reporter_path(self) -> str:
        return str(resources.files("qualgent.agent").joinpath(REPORTER))

    def command(self, paths: list[str], retries: int, timeout_ms: int) -> list[str]:
        return [
            *self.playwright,
            "test",
            *paths,
            "--config",
            str(self.config),
            "--reporter",
            self.reporter_path(),
            "--retries",
            str(retries),
            "--timeout",
            str(timeout_ms),
            "--pass-with-no-tests",
            "--project",
            self.project,
        ]

    async def check_project(self, env: dict[str, str]) -> None:
        """`playwright test --list` with our config and project: an unknown project or a config that does not load
        stops the agent before it claims anything (no global setup, no device: --list runs neither)."""
        argv = [
            *self.playwright,
            "test",
            "--list",
            "--config",
            str(self.config),
            "--reporter",
            "null",
            "--pass-with-no-tests",
            "--project",
            self.project,
        ]
        result = await Run(argv, CHECK_TIMEOUT_SECONDS, env, cwd=str(self.workdir)).execute()
        if result.exit_code != 0:
            raise AppwrightError(
                f"Playwright cannot list the tests of project {self.project!r} with {self.config}: "
                + (_first_error(result.output_tail) or result.error or f"exit {result.exit_code}")
            )


def _check_playwright_installed(workdir: Path, words: tuple[str, ...]) -> None:
    """`npx playwright` in a workdir without it would fetch Playwright from the registry (or ask a person):
    refuse instead. Another launcher must be on PATH."""
    if words[0] == "npx":
        name = next((w for w in words[1:] if not w.startswith("-")), None)
        if name is None:
            raise AppwrightError(f"--playwright {' '.join(words)!r} names no command for npx")
        for folder in (workdir, *workdir.parents):
            if (folder / "node_modules" / ".bin" / name).exists():
                return
        raise AppwrightError(
            f"no {name} in {workdir}/node_modules (nor above it): run `npm ci` there, or give --playwright"
        )
    if os.sep in words[0]:
        if not (workdir / words[0]).exists():
            raise AppwrightError(f"--playwright: {workdir / words[0]} does not exist")
    elif shutil.which(words[0]) is None:
        raise AppwrightError(f"--playwright: {words[0]!r} is not on PATH")


def _first_error(output: str) -> str | None:
    for line in output.splitlines():
        if line.strip().startswith("Error:"):
            return line.strip()[:500]
    return None


# -- one run -------------------------------------------------------------------------------------------


@dataclass
class _File:
    """One job: one test file, followed through the run's events."""

    job: dict[str, Any]
    path: Path  # resolved
    tests: int | None = None  # from the run's begin event
    started: bool = False
    accepted: asyncio.Future[bool] | None = None
    ended: int = 0  # tests ended for good
    failed: bool = False
    error: str | None = None
    error_location: str | None = None
    duration_ms: int = 0
    lines: list[str] = field(default_factory=list)
    done: bool = False
    cancelled: bool = False


class GroupRun:
    """Runs one claimed group's jobs as Playwright runs and reports each job as its file ends."""

    def __init__(
        self,
        agent: Agent,
        settings: AppwrightSettings,
        claim: dict[str, Any],
        current: _Current,
        reporter: Reporter,
        env: dict[str, str],
    ) -> None:
        self.agent, self.settings, self.claim, self.current, self.reporter = agent, settings, claim, current, reporter
        self.env = env
        self.runs = 0

    async def run(self, install_error: str | None, build_path: str | None) -> None:
        jobs: list[dict[str, Any]] = self.claim["jobs"]
        details = await self._details([j["id"] for j in jobs])
        for job in jobs:
            job.update(details.get(str(job["id"]), {}))
        jobs = [job for job in jobs if job.get("status") != "cancelled"]  # cancelled since the claim: not run
        if install_error is not None:
            for job in jobs:
                self._report_now(job, {"exit_code": None, "outcome": "infra_error", "error": install_error})
            return
        runnable: list[_File] = []
        for job in jobs:
            problem, path = self._resolve(job["test_path"])
            if problem is not None:
                self._report_now(job, {"exit_code": 1, "duration_ms": 0, "error": problem, "final": True})
            else:
                runnable.append(_File(job, path))
        for chunk in self._chunks(runnable):
            if self.agent._stopping.is_set() or self.current.lost or not await self.agent._lease_held(self.current):
                break
            await self._run_chunk(chunk, build_path)

    async def _details(self, job_ids: list[Any]) -> dict[str, dict[str, Any]]:
        """test_retries and timeout_seconds of the claimed jobs (the claim does not carry the first)."""
        try:
            answer = await self.agent.client.call(
                "POST",
                f"/agents/{self.agent.agent_id}/jobs/wait",
                {"jobs": [{"id": str(j), "status": None} for j in job_ids], "timeout": 0},
                retry_for=self.agent.lease_seconds,
            )
        except (ConnectionError, ServerRejected, ServerConflict) as err:
            log.warning("could not read the jobs' retries and timeouts: %s", err)
            return {}
        return {str(job["id"]): job for job in answer}

    def _resolve(self, test_path: str) -> tuple[str | None, Path]:
        path = (self.settings.workdir / test_path).resolve()
        if not path.is_relative_to(self.settings.workdir):
            return f"test path {test_path} is outside the agent's --workdir {self.settings.workdir}", path
        if not path.is_file():
            return f"no test file {test_path} in {self.settings.workdir}", path
        return None, path

    def _chunks(self, files: list[_File]) -> list[list[_File]]:
        """Files that share retries and timeout run together (Playwright takes them per run), at most
        --max-tests-per-run at a time, in the order the server gave them."""
        by_key: dict[tuple[int, int], list[_File]] = {}
        for f in files:
            by_key.setdefault((self._retries(f.job), self._timeout_ms(f.job)), []).append(f)
        size = self.settings.max_tests_per_run
        chunks: list[list[_File]] = []
        for same in by_key.values():
            step = size or len(same)
            chunks += [same[i : i + step] for i in range(0, len(same), step)]
        return chunks

    @staticmethod
    def _retries(job: dict[str, Any]) -> int:
        # Each try is an attempt: never more than the job has left.
        left = int(job.get("max_attempts", 1)) - int(job.get("attempts", 0)) - 1
        return max(0, min(int(job.get("test_retries") or 0), left))

    def _timeout_ms(self, job: dict[str, Any]) -> int:
        return int((job.get("timeout_seconds") or self.agent.config.test_timeout) * 1000)

    def _report_now(self, job: dict[str, Any], result: dict[str, Any]) -> None:
        self.reporter.start(job["id"])
        self.reporter.result(job["id"], result)

    # -- the run ---------------------------------------------------------------------------------------

    async def _run_chunk(self, files: list[_File], build_path: str | None) -> None:
        retries, timeout_ms = self._retries(files[0].job), self._timeout_ms(files[0].job)
        paths = [str(f.path.relative_to(self.settings.workdir)) for f in files]
        argv = self.settings.command(paths, retries, timeout_ms)
        watchdog = len(files) * (retries + 1) * timeout_ms / 1000 + WATCHDOG_MARGIN_SECONDS
        by_path = {str(f.path): f for f in files}
        with tempfile.TemporaryDirectory(prefix="qg-") as folder:
            where = os.path.join(folder, "r.sock")
            events = _Events(self, by_path)
            server = await asyncio.start_unix_server(events.serve, path=where)
            env = dict(self.env)
            env.update(
                {
                    "CI": "true",
                    "PLAYWRIGHT_HTML_OPEN": "never",
                    "QUALGENT_REPORTER_SOCKET": where,
                    "QUALGENT_JOB_IDS": " ".join(str(f.job["id"]) for f in files),
                    "QUALGENT_TEST_PATHS": " ".join(paths),
                }
            )
            if build_path is not None:
                env["QUALGENT_BUILD_PATH"] = build_path
            log.info("running %d test file(s) as one Playwright run: %s", len(files), argv)
            run = Run(argv, watchdog, env, cwd=str(self.settings.workdir))
            self.current.run = run
            self.runs += 1
            events.run = run
            watch = asyncio.create_task(events.watch_cancels(), name="appwright cancels")
            try:
                result = await run.execute()
                await events.drained(timeout=5)
            finally:
                with contextlib.suppress(Exception):
                    await cancel_and_wait(watch)
                server.close()
                with contextlib.suppress(Exception):
                    await server.wait_closed()
                self.current.run = None
        events.finish(result)
        if (
            build_path is not None
            and build_path.startswith("bs://")
            and (events.app_gone or browserstack.APP_GONE_MARKER in result.output_tail)
        ):
            await browserstack.forget(self.agent, self.claim, build_path)


class _Events:
    """The reporter's JSON lines, applied to the run's files as they come."""

    def __init__(self, group: GroupRun, files: dict[str, _File]) -> None:
        self.group = group
        self.files = files
        self.run: Run | None = None
        self.run_error: str | None = None
        self.run_error_location: str | None = None
        self.began = False
        self.errors: list[dict[str, Any]] = []  # errors outside tests: global setup, a file that does not load
        self.app_gone = False
        self.ended = asyncio.Event()
        self.connections: list[asyncio.Task[None]] = []
        self.started_at = time.monotonic()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.connections.append(task)
        try:
            while line := await reader.readline():
                try:
                    event = json.loads(line)
                except ValueError:
                    log.warning("the Playwright reporter sent a line that is not JSON: %r", line[:200])
                    continue
                self.apply(event)
        finally:
            writer.close()

    async def drained(self, timeout: float) -> None:
        """Every line the reporter wrote before its process ended is applied."""
        pending = [t for t in self.connections if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "begin":
            self.began = True
            counts: dict[str, int] = event.get("files") or {}
            for path, f in self.files.items():
                f.tests = counts.get(path, 0)  # 0: no test, or none loaded (global setup failed): told at the end
        elif kind == "test_begin":
            began = self.files.get(event.get("file", ""))
            if began is not None:
                self._start(began)
        elif kind == "test_end":
            ended = self.files.get(event.get("file", ""))
            if ended is not None:
                self._test_end(ended, event)
        elif kind == "error":
            self.errors.append(event)
            if self.run_error is None:
                self.run_error = event.get("error")
                self.run_error_location = self._relative(event.get("error_location"))
        elif kind == "end":
            self.ended.set()

    def _no_test(self, f: _File) -> str:
        return f"{f.job['test_path']} holds no test for project {self.group.settings.project!r}"

    def _start(self, f: _File) -> None:
        if not f.started and not f.done:
            f.started = True
            f.accepted = self.group.reporter.start(f.job["id"])
            f.accepted.add_done_callback(lambda accepted: self._refused(f, accepted))

    def _refused(self, f: _File, accepted: asyncio.Future[bool]) -> None:
        if not accepted.cancelled() and accepted.result() is False:
            f.cancelled = True  # cancelled before it began: its result is not ours to give
            self._stop_if_all_cancelled()

    def _test_end(self, f: _File, event: dict[str, Any]) -> None:
        if f.done:
            return
        self._start(f)
        status = event.get("status")
        ok = status in ("passed", "skipped") or status == event.get("expected_status")
        duration = int(event.get("duration_ms") or 0)
        f.duration_ms += duration
        self._note(f, event, ok)
        if status == "interrupted":
            return  # the run was stopped: the file gets no result from this test
        if not ok and browserstack.APP_GONE_MARKER in (event.get("error") or ""):
            self.app_gone = True  # not the test's fault: the file gets an infrastructure error, retried
            return
        if not ok and not self._failed(f, event, duration):
            return  # Playwright retries the test within this run
        f.ended += 1
        if f.tests is not None and f.ended >= f.tests:
            result: dict[str, Any] = {"exit_code": 1 if f.failed else 0, "duration_ms": f.duration_ms}
            if f.failed:
                result.update(error=f.error, error_location=f.error_location)
            self._end(f, result)

    @staticmethod
    def _note(f: _File, event: dict[str, Any], ok: bool) -> None:
        """The test's line in its job's output tail, with its attachments (videos, screenshots, traces)."""
        retry = int(event.get("retry") or 0)
        again = f" (retry #{retry})" if retry else ""
        f.lines.append(f"{'✓' if ok else '✘'} {event.get('title')}{again} [{event.get('status')}] "
                       f"{int(event.get('duration_ms') or 0)} ms")  # fmt: skip
        for attachment in event.get("attachments") or []:
            if attachment.get("path"):
                f.lines.append(f"  attachment {attachment.get('name')}: {attachment['path']}")

    def _failed(self, f: _File, event: dict[str, Any], duration: int) -> bool:
        """A failed try: recorded as an attempt of its own when Playwright retries it (False), else the file's
        failure, the first one's error and location kept (True: the test ended for good)."""
        error = _trim(event.get("error") or f"test {event.get('status')}")
        location = self._relative(event.get("error_location"))
        f.lines.append(f"  {error.splitlines()[0] if error else ''}")
        message = f"{event.get('title')}: {error}"
        if not event.get("final"):
            self.group.reporter.result(
                f.job["id"],
                {
                    "exit_code": 1,
                    "duration_ms": duration,
                    "error": message,
                    "error_location": location,
                    "retrying": True,
                    "output_tail": "\n".join(f.lines),
                },
            )
            return False
        if not f.failed:
            f.failed, f.error, f.error_location = True, message, location
        return True

    def _end(self, f: _File, result: dict[str, Any]) -> None:
        self._start(f)
        f.done = True
        result.setdefault("output_tail", "\n".join(f.lines))
        self.group.reporter.result(f.job["id"], result)
        self._stop_if_all_cancelled()

    def _relative(self, location: str | None) -> str | None:
        if not location:
            return None
        workdir = str(self.group.settings.workdir) + os.sep
        return location[len(workdir) :] if location.startswith(workdir) else location

    def unfinished(self) -> list[_File]:
        return [f for f in self.files.values() if not f.done]

    def _stop_if_all_cancelled(self) -> None:
        left = self.unfinished()
        if left and all(f.cancelled for f in left) and self.run is not None:
            log.info("every unfinished job of the run was cancelled: stopping it")
            asyncio.get_running_loop().create_task(self.run.stop())

    async def watch_cancels(self) -> None:
        """Long-poll the run's unfinished jobs: a cancel is seen within moments, not at the next heartbeat."""
        agent = self.group.agent
        path = f"/agents/{agent.agent_id}/jobs/wait"
        while True:
            left = [f for f in self.unfinished() if not f.cancelled]
            if not left:
                return
            known = [{"id": str(f.job["id"]), "status": "running" if f.started else "pending"} for f in left]
            try:
                answer = await agent.client.call(
                    "POST", path, {"jobs": known, "timeout": CANCEL_POLL_SECONDS}, retry_for=5
                )
            except (ConnectionError, ServerRejected, ServerConflict):
                await asyncio.sleep(agent.lease_seconds / 3)
                continue
            by_id = {str(f.job["id"]): f for f in left}
            for job in answer:
                f = by_id.get(str(job["id"]))
                if f is not None and job["status"] == "cancelled":
                    log.info("job %s was cancelled", job["id"])
                    f.cancelled = True
                    self.group.current.cancelled.add(f.job["id"])
            self._stop_if_all_cancelled()
            await asyncio.sleep(0.05)  # our own starts and results change statuses too: do not spin on them

    def finish(self, result: RunResult) -> None:
        """The run is over: a file it did not finish gets an infrastructure error (or nothing, if cancelled)."""
        left = self.unfinished()
        if not left:
            return
        if self.group.current.lost:
            return
        why = self._why(result)
        for f in left:
            if f.cancelled:
                f.done = True
                continue
            if self.began and f.tests == 0 and self._no_test_result(f):
                continue
            self._end(
                f,
                {
                    "exit_code": None,
                    "outcome": "infra_error",
                    "duration_ms": f.duration_ms,
                    "error": f"{f.job['test_path']} got no result: {why}",
                    "error_location": self.run_error_location,
                    "output_tail": result.output_tail,
                },
            )

    def _no_test_result(self, f: _File) -> bool:
        """A file the run found no test in: its own error (it does not load) or "holds no test", both final; when
        the run failed outside it (global setup) and ran nothing, it is the run's fault (False)."""
        own = [e for e in self.errors if (e.get("error_location") or "").startswith(str(f.path) + ":")]
        if own:
            error = own[0]
            result = {"exit_code": 1, "error": _trim(error.get("error") or ""), "final": True}
            self._end(f, {**result, "duration_ms": 0, "error_location": self._relative(error.get("error_location"))})
            return True
        if not self.errors and self.ended.is_set():
            self._end(f, {"exit_code": 1, "duration_ms": 0, "error": self._no_test(f), "final": True})
            return True
        return False

    def _why(self, result: RunResult) -> str:
        if result.timed_out:
            return f"the run passed its watchdog ({result.error})"
        if result.stopped:
            return "the run was stopped by the agent"
        if self.app_gone:
            return f"BrowserStack no longer has the app ({browserstack.APP_GONE_MARKER}); it is uploaded again"
        if self.run_error:
            return _trim(self.run_error)
        if result.error:
            return result.error
        if not self.began:
            return f"the Playwright run ended before its tests began (exit {result.exit_code})"
        return f"the Playwright run ended (exit {result.exit_code}) before the file's tests did"


def _trim(text: str) -> str:
    return text.strip()[:FIRST_ERROR_CHARS]


async def run_group(
    agent: Agent,
    settings: AppwrightSettings,
    claim: dict[str, Any],
    current: _Current,
    reporter: Reporter,
    install_error: str | None,
) -> None:
    """The agent loop's entry: the group's build for QUALGENT_BUILD_PATH, then its runs."""
    from qualgent.agent.loop import _env

    build_path: str | None = None
    if install_error is None and settings.build is not None:
        build_path, install_error = await resolve_build(agent, settings, claim)
    env = _env(claim, None, agent._base_env)
    await GroupRun(agent, settings, claim, current, reporter, env).run(install_error, build_path)


async def resolve_build(
    agent: Agent, settings: AppwrightSettings, claim: dict[str, Any]
) -> tuple[str | None, str | None]:
    """The build the config's buildPath should read: (path or bs:// id, None) or (None, why it cannot be had)."""
    assert settings.build is not None
    fields = {
        "app_version_id": claim["app_version_id"],
        "target": claim["target"],
        "org_id": claim["org_id"],
        "job_id": str(claim["jobs"][0]["id"]),
        "test_path": claim["jobs"][0]["test_path"],
    }
    (rendered,) = settings.build.render(**fields)
    local = (settings.workdir / rendered).resolve()
    if claim["target"] != "browserstack":
        return str(local), None
    try:
        return await browserstack.app_url(agent, claim, local), None
    except browserstack.UploadError as err:
        return None, f"BrowserStack upload failed: {err}"
