"""What the benchmarks' command lines share: the server a run measures."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from qualgent.server.bench.common import BenchTarget, ServerProcess
from qualgent.server.db.engine import libpq_url


@contextlib.contextmanager
def target_for(
    database_url: str, api_url: str | None, token: str | None = None, server_pid: int | None = None
) -> Iterator[BenchTarget]:
    """What a benchmark's command line measures: the server at `api_url`, or else a `qgjob server --migrate`
    started on `database_url` for the run (its pid known, for its CPU time) and stopped after it."""
    if api_url is not None:
        yield BenchTarget(api_url, libpq_url(database_url), token, server_pid)
        return
    log = Path(tempfile.mkdtemp(prefix="qualgent-bench-")) / "server.log"
    server = ServerProcess(database_url, log).start(["--migrate"])
    try:
        pid = server.process.pid if server.process else None
        yield BenchTarget(server.api_url, libpq_url(database_url), token, pid)
    finally:
        server.stop()
