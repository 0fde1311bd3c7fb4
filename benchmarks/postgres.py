"""What the benchmarks read of PostgreSQL and of this machine: PostgreSQL's processes and the CPU time they
spend, the server's and the whole machine's (from /proc, when they run on this machine)."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

APPLICATION_NAME = "qgjob bench"  # the benchmarks' own bookkeeping connections, left out of what is measured


class PostgresProcesses:
    """PostgreSQL's processes by pid, as pg_stat_activity lists them to `conn` (one of ours): 'backend' for a
    connection to this database that is not ours, 'background' for the cluster's own processes (WAL writer,
    checkpointer...). None when PostgreSQL is not on this machine (its pids are not in our /proc)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.local: bool | None = None

    async def __call__(self) -> dict[int, str] | None:
        if self.local is None:
            row = await (await self.conn.execute("SELECT pg_backend_pid()")).fetchone()
            self.local = row is not None and is_postgres(int(row[0]))
        if not self.local:
            return None
        cursor = await self.conn.execute(
            "SELECT pid, datname = current_database(), backend_type FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND application_name IS DISTINCT FROM %(me)s",
            {"me": APPLICATION_NAME},
        )
        out = {}
        for pid, here, backend_type in await cursor.fetchall():
            if backend_type != "client backend":
                out[int(pid)] = "background"
            elif here:
                out[int(pid)] = "backend"
        return out


class PostgresCpu:
    """CPU seconds of PostgreSQL's processes over a window, from /proc: each pid counted from when the window
    began (or from its birth, for a connection opened meanwhile) to when it was last seen. Sample at the
    start, keep sampling (a pooled connection may come and go), sample at the end."""

    def __init__(self, processes: PostgresProcesses) -> None:
        self.processes = processes
        self.window_start = uptime_ticks()
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.kind: dict[int, str] = {}
        self.available = True

    async def sample(self) -> None:
        processes = await self.processes()
        if processes is None:
            self.available = False
            return
        for pid, kind in processes.items():
            try:
                cpu, born = cpu_and_birth(pid)
            except OSError:
                continue  # it just exited
            if pid not in self.first:
                self.first[pid] = 0.0 if born > self.window_start else cpu
                self.kind[pid] = kind
            self.last[pid] = cpu

    async def keep_sampling(self, every: float = 0.5) -> None:
        while True:
            await asyncio.sleep(every)
            await self.sample()

    def total(self, kind: str) -> float | None:
        if not self.available:
            return None
        return sum(self.last[p] - self.first[p] for p in self.first if self.kind[p] == kind)


def is_postgres(pid: int) -> bool:
    """Whether `pid` is a PostgreSQL process on this machine."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    return cmdline.exists() and b"postgres" in cmdline.read_bytes()


def cpu_and_birth(pid: int) -> tuple[float, int]:
    """CPU seconds used so far, and the start time in clock ticks since boot."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return process_cpu_seconds(pid), int(fields[19])


def uptime_ticks() -> int:
    return int(float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK"))


def cpu_of(pid: int | None) -> float | None:
    """CPU seconds of process `pid` so far; None without a pid or once it is gone."""
    if pid is None:
        return None
    try:
        return process_cpu_seconds(pid)
    except OSError:
        return None


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (from /proc/stat): differences tell what a run cost
    the whole machine (PostgreSQL included)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuMeter:
    """CPU seconds used during a phase: by the server process, by this process, by the whole machine."""

    server_pid: int | None = None
    _start: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def _now(self) -> tuple[float, float, float, float]:
        server = process_cpu_seconds(self.server_pid) if self.server_pid else 0.0
        return (time.perf_counter(), server, time.process_time(), machine_busy_seconds())

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> dict[str, float]:
        end = self._now()
        wall, server, own, machine = (b - a for a, b in zip(self._start, end, strict=True))
        figures = {"wall_s": round(wall, 3), "bench_process_cpu_s": round(own, 3), "machine_cpu_s": round(machine, 3)}
        if self.server_pid:
            figures["server_cpu_s"] = round(server, 3)
            figures["rest_cpu_s"] = round(machine - server - own, 3)  # PostgreSQL, mostly
        return figures
