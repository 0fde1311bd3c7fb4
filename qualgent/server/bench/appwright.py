"""`qgjob bench --appwright DIR`: a group of one-test files as ONE Playwright run (what `qgjob agent --appwright`
starts, with qualgent's reporter streaming to a socket) against one run per file (what `--run` with a per-test
command starts), on this machine, in the same bench, rounds interleaved. Needs a folder whose node_modules has
@playwright/test (e.g. tests/e2e/playwright_project after `npm ci`); no device, no browser, no database."""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qualgent.agent.appwright import REPORTER
from qualgent.agent.executor import Run

CONFIG = """\
const { defineConfig } = require("@playwright/test");
module.exports = defineConfig({ testDir: "./specs", workers: 1, projects: [{ name: "bench" }] });
"""
SPEC = """\
const {{ test, expect }} = require("@playwright/test");
test("step {n}", async () => {{ expect({n} + 1).toBe({n1}); }});
"""


class BenchError(ValueError):
    """The bench cannot run with these settings."""


def measure(project: Path, files: int, rounds: int, say: Callable[[str], None]) -> dict[str, Any]:
    modules = project.resolve() / "node_modules"
    if not (modules / ".bin" / "playwright").exists():
        raise BenchError(f"no {modules}/.bin/playwright: run `npm ci` in {project} first")
    return asyncio.run(_measure(modules, files, rounds, say))


async def _measure(modules: Path, files: int, rounds: int, say: Callable[[str], None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="qg-bench-pw-") as folder:
        root = Path(folder)
        (root / "node_modules").symlink_to(modules, target_is_directory=True)
        (root / "playwright.config.js").write_text(CONFIG)
        (root / "specs").mkdir()
        paths = []
        for n in range(files):
            name = f"specs/t{n:03d}.spec.js"
            (root / name).write_text(SPEC.format(n=n, n1=n + 1))
            paths.append(name)
        playwright = [str(root / "node_modules" / ".bin" / "playwright"), "test"]
        common = ["--config", str(root / "playwright.config.js"), "--project", "bench"]
        one_run: list[float] = []
        per_test: list[float] = []
        for round_ in range(1, rounds + 1):
            started = time.perf_counter()
            events = await _one_run(root, [*playwright, *paths, *common, "--reporter", _reporter()])
            one_run.append(time.perf_counter() - started)
            if events != files:
                raise BenchError(f"the one run reported {events} test ends, not {files}")
            started = time.perf_counter()
            for path in paths:
                result = await Run([*playwright, path, *common], 120, _env(), cwd=str(root)).execute()
                if result.exit_code != 0:
                    raise BenchError(f"{path} did not pass: {result.error or result.output_tail[-500:]}")
            per_test.append(time.perf_counter() - started)
            say(f"appwright round {round_}: one run {one_run[-1]:.2f} s, {files} runs {per_test[-1]:.2f} s")
    ratios = [p / o for o, p in zip(one_run, per_test, strict=True)]
    median = statistics.median(ratios)
    best = ratios.index(median) if median in ratios else 0
    return {
        "files": files,
        "rounds": [{"one_run_seconds": o, "per_test_seconds": p} for o, p in zip(one_run, per_test, strict=True)],
        "one_run_seconds": one_run[best],
        "per_test_runs_seconds": per_test[best],
        "one_run_vs_per_test_runs": median,
    }


async def _one_run(root: Path, argv: list[str]) -> int:
    """The agent's way: one run, its reporter streaming test ends to a Unix socket; the ends counted."""
    ends = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal ends
        while line := await reader.readline():
            ends += b'"event":"test_end"' in line
        writer.close()

    where = str(root / "r.sock")
    server = await asyncio.start_unix_server(serve, path=where)
    try:
        result = await Run(argv, 300, {**_env(), "QUALGENT_REPORTER_SOCKET": where}, cwd=str(root)).execute()
    finally:
        server.close()
    if result.exit_code != 0:
        raise BenchError(f"the one run failed: {result.error or result.output_tail[-500:]}")
    await asyncio.sleep(0.05)  # the last lines, sent before the process ended
    return ends


def _reporter() -> str:
    from importlib import resources

    return str(resources.files("qualgent.agent").joinpath(REPORTER))


def _env() -> dict[str, str]:
    return {**os.environ, "CI": "true", "PLAYWRIGHT_HTML_OPEN": "never"}
