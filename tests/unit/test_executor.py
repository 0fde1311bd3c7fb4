"""The executor runs real processes: exit codes, output tail, timeouts and stops kill the whole tree."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qualgent.agent.executor import TAIL_BYTES, Run
from tests.eventually import until

pytestmark = pytest.mark.anyio


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_exit_code_and_output_are_reported() -> None:
    result = await Run(_python("print('hello'); import sys; sys.exit(1)"), timeout=30).execute()
    assert result.exit_code == 1
    assert result.output_tail.strip() == "hello"
    assert result.error is None


async def test_only_a_bounded_tail_of_the_output_is_kept() -> None:
    result = await Run(_python("print('x' * 1_000_000 + 'END')"), timeout=30).execute()
    assert len(result.output_tail.encode()) <= TAIL_BYTES
    assert result.output_tail.strip().endswith("END")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_timeout_kills_the_whole_process_tree(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time;"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    result = await Run(_python(code), timeout=1).execute()
    assert result.timed_out
    assert result.exit_code is None
    assert "timed out" in (result.error or "")
    child = int(pid_file.read_text())
    await until(lambda: not _alive(child) or _zombie(child), timeout=10, what="the child to die")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


async def test_stop_kills_a_running_test(tmp_path: Path) -> None:
    started = tmp_path / "started"
    run = Run(_python(f"import pathlib, time; pathlib.Path({str(started)!r}).touch(); time.sleep(60)"), timeout=60)
    task = asyncio.create_task(run.execute())
    await until(started.exists, timeout=30, what="the test to start")
    await run.stop()
    result = await asyncio.wait_for(task, 10)
    assert result.stopped
    assert result.exit_code is None


async def test_a_missing_program_is_an_error_not_a_crash() -> None:
    result = await Run(["/nonexistent/appwright"], timeout=5).execute()
    assert result.exit_code is None
    assert "cannot start" in (result.error or "")


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 watches children by pidfd itself")
def test_agents_and_the_bench_wait_for_their_processes_by_pidfd() -> None:
    """In a process of its own: the choice is global to the process that makes it."""
    script = (
        "import asyncio\n"
        "from qualgent.agent.executor import Run, watch_children_by_pidfd\n"
        "watch_children_by_pidfd()\n"
        "print(type(asyncio.get_event_loop_policy().get_child_watcher()).__name__)\n"
        "print(asyncio.run(Run(['true'], 5).execute()).exit_code)\n"
    )
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    if not hasattr(os, "pidfd_open"):
        pytest.skip("no pidfd on this platform")
    assert done.stdout.split() == ["PidfdChildWatcher", "0"]
