"""Real `qgjob` processes for end-to-end tests: a server, agents, and the CLI, as a user runs them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qualgent.server.bench.common import PORT_TAKEN, ServerFailed, free_port, start_server
from tests.eventually import wait_for  # noqa: F401  (the e2e tests import it from here)

QGJOB = str(Path(sys.executable).with_name("qgjob"))


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any qualgent/qgjob settings, plus `extra`."""
    # COLUMNS/LINES too: pytest-xdist's workers set them (80x24), and the CLI under test must see a plain pipe.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("QUALGENT_", "QGJOB_", "GITHUB_")) and k not in ("COLUMNS", "LINES")
    }
    env.update(extra)
    return env


@dataclass
class Server:
    """`qgjob server` on a free port; stopped with SIGTERM (or killed) at the end."""

    log_path: Path
    database_url: str | None = None
    data_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, timeout: float = 60.0, extra_args: Sequence[str] = ()) -> Server:
        """Start it and wait until THIS process serves the port (qualgent.server.bench.common.start_server). A first
        start whose probed port was taken meanwhile tries another; a restart keeps its address (the clients know
        only that one) and raises, saying "address already in use", if it was taken."""
        first = self.process is None
        for _ in range(3 if first else 1):
            args = [QGJOB, "server", "--port", str(self.port), *extra_args]
            if self.database_url:
                args += ["--database-url", self.database_url]
            if self.data_dir:
                args += ["--data-dir", str(self.data_dir)]
            try:
                self.process = start_server(args, self.port, self.log_path, clean_env(**self.env), timeout)
            except ServerFailed as failed:
                self.process = failed.process
                raise AssertionError(str(failed)) from failed
            if self.process is not None:
                return self
            if first:
                self.port = free_port()
        raise AssertionError(f"qgjob server: port {self.port}: {PORT_TAKEN}:\n{self.log()}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Cli:
    api_url: str
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [QGJOB, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_env(QGJOB_API_URL=self.api_url, **self.env),
        )

    def json(self, *args: str, timeout: float = 60.0) -> Any:
        done = self.run(*args, "--json", timeout=timeout)
        assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
        return json.loads(done.stdout)

    def submit(self, *tests: str, **options: str) -> list[dict[str, Any]]:
        args = ["submit", "--org-id", options.pop("org_id", "acme"), "--app-version-id", options.pop("app", "v1")]
        for test in tests:
            args += ["--test", test]
        for name, value in options.items():
            args += [f"--{name.replace('_', '-')}", value]
        return self.json(*args)  # type: ignore[no-any-return]


FAKE_APPWRIGHT = """\
#!{python}
# Stands in for `npx appwright test`: logs each call, then exits by the test's name:
# *fail* exits 1 (test failed), *infra* exits 3 (infrastructure), *sleep<N>* sleeps N seconds first.
# FAKE_EXIT in the environment overrides the exit code of runs (to tell two agents' runs apart).
import os, re, sys, time
with open({log!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + " pid=%d job=%s\\n" % (os.getpid(), os.environ.get("QUALGENT_JOB_ID", "-")))
name = " ".join(sys.argv[1:])
match = re.search(r"sleep(\\d+(?:\\.\\d+)?)", name)
time.sleep(float(match.group(1)) if match else 0.05)
if os.environ.get("FAKE_EXIT") and sys.argv[1] == "run":
    sys.exit(int(os.environ["FAKE_EXIT"]))
sys.exit(1 if "fail" in name else 3 if "infra" in name else 0)
"""


def fake_appwright(directory: Path) -> tuple[Path, Path]:
    """A stand-in test runner script and the log it appends one line per call to."""
    log = directory / "runs.log"
    script = directory / "fake-appwright"
    script.write_text(textwrap.dedent(FAKE_APPWRIGHT.format(python=sys.executable, log=str(log))))
    script.chmod(0o755)
    return script, log


@contextlib.contextmanager
def agent(
    api_url: str, script: Path, log_path: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`qgjob agent` running the stand-in runner `script` (fake_appwright) per test."""
    args = [
        "--install", f"{script} install {{app_version_id}}",
        "--run", f"{script} run {{app_version_id}} {{test_path}}",
        *extra,
    ]  # fmt: skip
    with agent_process(api_url, log_path, args, env) as process:
        yield process


@contextlib.contextmanager
def agent_process(
    api_url: str, log_path: Path, args: Sequence[str], env: dict[str, str] | None = None, stop_seconds: float = 30
) -> Iterator[subprocess.Popen[bytes]]:
    """A real `qgjob agent ARGS` (polling for work every 0.2 s when idle), its output in `log_path`; stopped with
    SIGTERM at the end (killed if it has not stopped in `stop_seconds`)."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [QGJOB, "agent", "--idle-poll-max", "0.2", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(QGJOB_API_URL=api_url, **(env or {})),
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(stop_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
