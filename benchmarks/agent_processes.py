"""End to end with real `qgjob agent` processes, each running `true` as the test (a process per test, as an
operator deploys them), against running `true` as many at a time with no queue at all: the ceiling for agents that
run a process per test. Both wait for their children by pidfd, as `qgjob agent` does.

    python -m benchmarks.agent_processes --server-url postgresql://postgres@127.0.0.1:5432/postgres \\
        [--jobs 3000] [--processes 3] [--group-size 20]

It makes the bench's scratch database beside --server-url's and starts `qgjob server` on it. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks.postgres import CpuMeter
from qualgent.agent.executor import watch_children_by_pidfd
from qualgent.server.bench.common import BenchTarget, ServerProcess, ratio
from qualgent.server.bench.run import scratch_database
from qualgent.server.bench.throughput import TARGET, timed_drain, wait_parked
from qualgent.server.db.engine import libpq_url

TRUE = shutil.which("true") or "/bin/true"


async def drain_with_processes(target: BenchTarget, jobs: int, group_size: int, processes: int) -> dict[str, Any]:
    """End to end with real `qgjob agent` processes, each running `true` as the test: as an operator deploys
    them, a process per test included."""
    fleet = _start_agent_processes(target, processes)
    try:
        async with httpx.AsyncClient(base_url=target.api_url, timeout=30, headers=target.headers()) as http:
            await wait_parked(http, "bench-process-", len(fleet), lambda: any(p.poll() is not None for p in fleet))

        def failed() -> str | None:
            return "a qgjob agent process exited" if any(p.poll() is not None for p in fleet) else None

        meter = CpuMeter(target.server_pid)
        elapsed = await timed_drain(target, jobs, group_size, "bench-processes", failed, lambda _: meter.start())
        cpu = meter.stop()  # and the last count of completed jobs: milliseconds of a drain of seconds
    finally:
        _stop_processes(fleet)
    return {
        "jobs": jobs,
        "processes": processes,
        "group_size": group_size,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(jobs / elapsed, 1),
        "cpu": cpu,
    }


def _start_agent_processes(target: BenchTarget, processes: int) -> list[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUALGENT_", "QGJOB_"))}
    env["QGJOB_API_URL"] = target.api_url
    if target.agents_token:
        env["QGJOB_TOKEN"] = target.agents_token
    true = shutil.which("true") or "/bin/true"
    command = [sys.executable, "-m", "qualgent", "agent", "--target", TARGET, "--log-level", "warning"]
    command += ["--run", f"{true} {{test_path}}"]
    return [
        subprocess.Popen([*command, "--name", f"bench-process-{i}"], env=env, stdout=subprocess.DEVNULL)
        for i in range(processes)
    ]


def _stop_processes(fleet: list[subprocess.Popen[bytes]]) -> None:
    for process in fleet:
        process.terminate()
    for process in fleet:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


async def spawn_true(runs: int, workers: int) -> float:
    """Runs per second of `true`, `workers` at a time, from this process: no queue at all."""
    done = 0

    async def work(count: int) -> None:
        nonlocal done
        for _ in range(count):
            process = await asyncio.create_subprocess_exec(TRUE, stdin=asyncio.subprocess.DEVNULL)
            await process.wait()
            done += 1

    started = time.perf_counter()
    share, extra = divmod(runs, workers)
    await asyncio.gather(*(work(share + (1 if i < extra else 0)) for i in range(workers)))
    return done / (time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.agent_processes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--group-size", type=int, default=20)
    args = parser.parse_args(argv)
    watch_children_by_pidfd()
    with (
        scratch_database(args.server_url) as url,
        tempfile.TemporaryDirectory() as tmp,
        ServerProcess(url, Path(tmp) / "server.log") as server,
    ):
        pid = server.process.pid if server.process else None
        target = BenchTarget(server.api_url, libpq_url(url), server_pid=pid)
        spawn = asyncio.run(spawn_true(args.jobs, args.processes))
        drained = asyncio.run(drain_with_processes(target, args.jobs, args.group_size, args.processes))
    result = {"spawn_true_per_s": round(spawn, 1), "end_to_end_processes": drained,
              "ratio": ratio(drained["jobs_per_s"], spawn)}  # fmt: skip
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
