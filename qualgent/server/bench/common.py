"""What every benchmark shares: the target it measures, a server process to measure, percentiles."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil


@dataclass(frozen=True, slots=True)
class BenchTarget:
    """A qgjob server (`api_url`) serving the scratch database `database_url` (a psycopg conninfo URL,
    `postgresql://...`, never the user's own database: benchmarks fill and truncate it)."""

    api_url: str
    database_url: str
    token: str | None = None  # the admin token, when the server enforces tokens
    server_pid: int | None = None  # when the server runs on this machine (benchmarks/ report its CPU time)
    agent_token: str | None = None  # what the bench's agents present, as deployed agents do (see agent_token())

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def agents_token(self) -> str | None:
        """What the bench's agents present: their agent token, else the admin's (or none on an open server)."""
        return self.agent_token or self.token


@contextlib.asynccontextmanager
async def agent_token(target: BenchTarget) -> AsyncIterator[BenchTarget]:
    """The target with an agent token made for the bench's agents, when the server enforces tokens (revoked
    afterwards): a deployed agent presents one, and the server checks it on every request (its token cache, read
    from api_tokens when that cannot vouch for it), where an admin token is only compared in memory."""
    if not target.token:
        yield target
        return
    async with httpx.AsyncClient(base_url=target.api_url, headers=target.headers(), timeout=30) as http:
        response = await http.post("/tokens", json={"role": "agent", "name": "qgjob-bench"})
        if response.status_code != 201:
            raise RuntimeError(f"making an agent token answered {response.status_code}: {response.text[:300]}")
        made = response.json()
        try:
            yield dataclasses.replace(target, agent_token=made["token"])
        finally:
            with contextlib.suppress(httpx.HTTPError):
                await http.delete(f"/tokens/{made['id']}")


def percentiles(samples_ms: Sequence[float]) -> dict[str, float | int]:
    """p50, p99 and max of latencies in milliseconds (nearest-rank), with the sample count."""
    if not samples_ms:
        return {"n": 0, "p50_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}
    ordered = sorted(samples_ms)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 3)

    return {"n": len(ordered), "p50_ms": rank(50), "p99_ms": rank(99), "max_ms": round(ordered[-1], 3)}


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0 or math.isnan(value) or math.isnan(baseline):
        return None
    return round(value / baseline, 3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PORT_TAKEN = "address already in use"  # what `qgjob server` says, and exits 3, when its port is taken


class ServerFailed(RuntimeError):
    """`qgjob server` exited (not for its port) or did not answer in time; `process` says how it ended."""

    def __init__(self, message: str, process: subprocess.Popen[bytes]) -> None:
        super().__init__(message)
        self.process = process


def start_server(
    command: Sequence[str], port: int, log_path: Path, env: dict[str, str], timeout: float = 60.0
) -> subprocess.Popen[bytes] | None:
    """Run `command` (`qgjob server ... --port <port>`), output appended to `log_path`, until THIS process serves
    `port` and answers its health check (a health check alone could reach another process that took the probed
    port first). None if the port was taken: the server then exits at once saying so."""
    offset = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        process = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if PORT_TAKEN in log_path.read_bytes()[offset:].decode(errors="replace"):
                return None
            raise ServerFailed(f"qgjob server exited with {process.returncode}: {_tail(log_path)}", process)
        listening = psutil.net_connections(kind="tcp")
        if any(c.pid == process.pid and c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in listening):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                    return process
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise ServerFailed(f"qgjob server did not answer within {timeout} s: {_tail(log_path)}", process)


def _tail(log_path: Path, lines: int = 30) -> str:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ServerProcess:
    """`qgjob server` in its own process on a free port, against `database_url`: what is measured is the
    product as deployed, not an in-process shortcut."""

    database_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, args: Sequence[str] = (), timeout: float = 60.0) -> ServerProcess:
        """Start it and wait until it serves, on another free port if its own was taken meanwhile."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QUALGENT_", "QGJOB_"))}
        env.update({"QUALGENT_RATE_LIMIT": "0", **self.env})
        for _ in range(3):
            command = [sys.executable, "-m", "qualgent", "server", "--port", str(self.port)]
            command += ["--database-url", self.database_url, "--log-level", "warning", *args]
            self.process = start_server(command, self.port, self.log_path, env, timeout)
            if self.process is not None:
                return self
            self.port = free_port()
        raise RuntimeError(f"qgjob server found no free port: {self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)

    def __enter__(self) -> ServerProcess:
        return self if self.process is not None else self.start()  # `with ServerProcess(...).start(args)` too

    def __exit__(self, *exc: Any) -> None:
        self.stop()
