"""The OS user the embedded PostgreSQL runs as (when qgjob runs as root) is made once, however many processes start
at once: pytest's workers and a server each start their own embedded PostgreSQL on a fresh machine."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None, reason="making OS users needs root and useradd"
)

STARTER = """
import sys, time
from pathlib import Path
from qualgent.server.db.embedded import _ensure_os_user
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.001)
print(_ensure_os_user(sys.argv[2]).pw_uid)
"""


def test_processes_starting_at_once_all_get_the_one_user_that_exists(tmp_path: Path) -> None:
    name = f"qg_t_{uuid.uuid4().hex[:8]}"
    go = tmp_path / "go"
    starters = [
        subprocess.Popen([sys.executable, "-c", STARTER, str(go), name], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    try:
        time.sleep(0.5)  # the scenario: every process is importing, then spinning on the go file
        go.touch()
        uids = {int(p.communicate(timeout=60)[0]) for p in starters}
        assert all(p.returncode == 0 for p in starters)
        # one user, and the uid each process was given (and would chown its data directory to) is that user's
        assert uids == {pwd.getpwnam(name).pw_uid}
    finally:
        for p in starters:
            p.kill()
        subprocess.run(["userdel", name], capture_output=True, check=False)
