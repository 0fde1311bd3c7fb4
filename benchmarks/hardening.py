"""The figures of issue 20 (docs/security.md), against a real `qgjob server` on loopback:

    .venv/bin/python -m benchmarks.hardening --server-url postgresql://postgres@127.0.0.1:5432/postgres
        [--code DIR] [--half-sent 1500] [--streams 300] [--submits 100]

1. Other clients' latency (GET /api/jobs?limit=1 from 127.0.0.2, p50 and p90) with no load, then with --half-sent
   requests held open from 127.0.0.1 (a head never finished), measured while they are held.
2. Submit latency of org A (POST /api/jobs, one job, p50 and p90) with no event stream open, then with --streams
   streams of org B open (submitter tokens of B, 100 streams each), and with as many of org A; and the server
   process's CPU per submit in each case (from /proc: this machine only). A submit sends one job notification.
   Three interleaved rounds; medians.

--code runs the server from another checkout (its `qualgent` first on PYTHONPATH, its own migrations), to compare
with code before the change in the same run. Ratios are against the baseline of the same run. Not collected by
pytest (no test_ prefix).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

from benchmarks.postgres import cpu_of
from qualgent.server.bench.common import ServerProcess
from qualgent.server.db.engine import libpq_url

QGJOB = str(Path(sys.executable).with_name("qgjob"))
ADMIN = "admin-" + secrets.token_hex(8)
ROUNDS = 3


@contextlib.contextmanager
def _database(server_url: str, env: dict[str, str]) -> Iterator[str]:
    name = f"qualgent_hardening_{os.getpid()}"
    admin = libpq_url(server_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server_url.rsplit("/", 1)[0] + "/" + name
    try:
        subprocess.run([QGJOB, "db", "upgrade", "--database-url", url], check=True, env=env, capture_output=True)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.9)]


async def _latencies(client: httpx.AsyncClient, count: int, method: str, path: str, body: Any = None) -> list[float]:
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        response = await client.request(method, path, json=body)
        assert response.status_code < 300, response.text
        samples.append((time.perf_counter() - began) * 1000)
    return samples


async def half_sent(base: str, port: int, count: int) -> dict[str, float]:
    other = httpx.AsyncClient(
        base_url=base,
        transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"),
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    async with other:
        await _latencies(other, 20, "GET", "/jobs?limit=1")  # warm
        quiet = _percentiles(await _latencies(other, 200, "GET", "/jobs?limit=1"))
        sockets = []
        refused = 0
        for _ in range(count):
            s = socket.socket()
            s.setblocking(True)
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
                s.sendall(b"GET /api/jobs HTTP/1.1\r\nHost: x\r\n")
            except OSError:
                refused += 1
            sockets.append(s)
        try:
            began = time.monotonic()
            held = _percentiles(await _latencies(other, 200, "GET", "/jobs?limit=1"))
            within = time.monotonic() - began
        finally:
            for s in sockets:
                s.close()
    return {
        "quiet_p50_ms": quiet[0],
        "quiet_p90_ms": quiet[1],
        "held_p50_ms": held[0],
        "held_p90_ms": held[1],
        "p50_ratio": held[0] / quiet[0],
        "measured_within_s": within,
        "send_failed": refused,
    }


async def _token(admin: httpx.AsyncClient, org_id: str) -> str:
    made = await admin.post("/tokens", json={"role": "submitter", "org_id": org_id})
    assert made.status_code == 201, made.text
    return str(made.json()["token"])


async def hold_streams(base: str, tokens: list[str], count: int) -> None:
    """In a process of its own (--hold-streams), so that reading the streams costs the measuring client nothing:
    open `count` streams, say `ready` on stdout, read them until killed."""
    limits = httpx.Limits(max_connections=None)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=httpx.Timeout(600)) as client:
        opened = asyncio.Semaphore(0)

        async def one(token: str) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            async with client.stream("GET", "/events", headers=headers) as response:
                assert response.status_code == 200, response.status_code
                opened.release()
                async for _ in response.aiter_lines():
                    pass

        tasks = [asyncio.create_task(one(tokens[i % len(tokens)])) for i in range(count)]
        for _ in range(count):
            await asyncio.wait_for(opened.acquire(), 60)
        await asyncio.sleep(1.0)  # subscribed: a stream subscribes once its response has started (older code too)
        print("ready", flush=True)
        await asyncio.gather(*tasks)


@contextlib.contextmanager
def _streams_open(base: str, tokens: list[str], count: int) -> Iterator[None]:
    args = [sys.executable, "-m", "benchmarks.hardening", "--hold-streams", base, str(count), *tokens]
    holder = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        yield
    finally:
        holder.kill()
        holder.wait()


async def _submits(base: str, token: str, pid: int, count: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers) as client:
        body = {"org_id": "alpha", "app_version_id": "v1", "test_path": "t.spec.ts"}
        await _latencies(client, 10, "POST", "/jobs", body)
        await asyncio.sleep(0.3)
        cpu_before = cpu_of(pid) or 0.0
        samples = await _latencies(client, count, "POST", "/jobs", body)
        await asyncio.sleep(0.5)  # the streams' work for the last notifications
        cpu = (cpu_of(pid) or 0.0) - cpu_before
    p50, p90 = _percentiles(samples)
    return {"p50_ms": p50, "p90_ms": p90, "server_cpu_ms_per_submit": cpu * 1000 / count}


async def streams(base: str, pid: int, count: int, submits: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        alpha = await _token(admin, "alpha")
        betas = [await _token(admin, "beta") for _ in range((count + 99) // 100)]
        alphas = [await _token(admin, "alpha") for _ in range((count + 99) // 100)]
    rounds: dict[str, list[dict[str, float]]] = {"none": [], "other_org": [], "same_org": []}
    for _ in range(ROUNDS):  # interleaved, as the machine's load drifts
        rounds["none"].append(await _submits(base, alpha, pid, submits))
        for label, tokens in (("other_org", betas), ("same_org", alphas)):
            with _streams_open(base, tokens, count):
                rounds[label].append(await _submits(base, alpha, pid, submits))
            await asyncio.sleep(0.5)
    results: dict[str, Any] = {
        label: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for label, runs in rounds.items()
    }
    for label in ("other_org", "same_org"):
        results[f"{label}_p50_ratio"] = results[label]["p50_ms"] / results["none"]["p50_ms"]
    return results


def main() -> None:
    if sys.argv[1:2] == ["--hold-streams"]:
        base, count, *tokens = sys.argv[2:]
        asyncio.run(hold_streams(base, tokens, int(count)))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--server-url", required=True)
    parser.add_argument("--code", type=Path, default=None, help="a checkout whose qualgent the server runs")
    parser.add_argument("--half-sent", type=int, default=1500)
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--submits", type=int, default=100)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUALGENT_", "QGJOB_"))}
    if args.code is not None:
        env["PYTHONPATH"] = str(args.code.resolve())
    env.update({"QUALGENT_ADMIN_TOKEN": ADMIN, "QUALGENT_RATE_LIMIT": "0"})
    log = Path(f"/tmp/qualgent-hardening-{os.getpid()}.log")
    server_env = {"QUALGENT_ADMIN_TOKEN": ADMIN, **({"PYTHONPATH": env["PYTHONPATH"]} if args.code else {})}
    with _database(args.server_url, env) as url:
        with ServerProcess(url, log, env=server_env) as server:
            print("half-sent:", asyncio.run(half_sent(server.api_url, server.port, args.half_sent)))
        with ServerProcess(url, log, env=server_env) as server:
            assert server.process is not None
            print("streams:", asyncio.run(streams(server.api_url, server.process.pid, args.streams, args.submits)))


if __name__ == "__main__":
    main()
