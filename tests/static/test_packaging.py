"""`pipx run` / `uvx` need a wheel whose entry point works on its own: build it from this checkout, look
inside, install it into a fresh virtualenv and run `qgjob` from there, away from the source tree.

The fresh virtualenv gets the wheel itself (--no-deps) and borrows the dependencies from the test's own
environment through a .pth file, so the test needs no network; `qualgent` is asserted to be imported from
the wheel, never from the checkout.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from qualgent.server.db import migrate
from tests.static import layers
from tests.static.tools import DEPLOY, ROOT, dockerfile_stages

DOCKERFILE = DEPLOY / "Dockerfile"


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = _run(sys.executable, "-m", "pip", "wheel", ROOT, "-w", out, "--no-deps", "--no-build-isolation", cwd=out)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("qualgent-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed; returns its bin directory."""
    where = tmp_path_factory.mktemp("fresh") / "venv"
    venv.create(where, with_pip=False)
    python = where / "bin" / "python"
    done = _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", wheel, cwd=where)
    assert done.returncode == 0, done.stdout + done.stderr
    site = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=where).stdout.strip()
    Path(site, "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return where / "bin"


def test_the_wheel_has_the_entry_point_and_every_migration(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    assert "[console_scripts]" in scripts
    assert "qgjob = qualgent.cli.main:main" in scripts
    migrations = {path.name for path in (ROOT / "alembic" / "versions").glob("*.py")}
    assert migrations, "the checkout has migrations"
    for name in migrations:
        assert f"qualgent/_migrations/versions/{name}" in names
    assert {"qualgent/_migrations/env.py", "qualgent/_migrations/script.py.mako"} <= names
    assert "qualgent/server/db/queries.sql" in names
    # The dashboard's templates and assets: served from the package, never from a CDN.
    web = Path(ROOT / "qualgent" / "server" / "web")
    for asset in [*web.glob("templates/*.html"), *web.glob("static/*")]:
        assert f"qualgent/server/web/{asset.relative_to(web)}" in names
    assert "qualgent/agent/playwright_reporter.cjs" in names  # qgjob agent --appwright's Playwright reporter


def test_qgjob_runs_from_the_wheel_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    where = _run(installed / "python", "-c", "import qualgent; print(qualgent.__file__)", cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), "qualgent must come from the wheel"

    shown = _run(installed / "qgjob", "--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    for command in ("submit", "wait", "agent", "server", "db"):
        assert command in shown.stdout


def test_db_upgrade_sql_comes_from_the_wheels_migrations(installed: Path, tmp_path: Path) -> None:
    """Offline mode: prints the migrations' SQL without connecting anywhere."""
    done = _run(installed / "qgjob", "db", "upgrade", "--sql", "--database-url", "postgresql://nobody@127.0.0.1:1/none",
                cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE" in done.stdout
    assert f"'{migrate.head_revision()}'" in done.stdout, "the SQL ends at the head revision"


def test_shell_completion_as_documented(installed: Path, tmp_path: Path) -> None:
    assert "_QGJOB_COMPLETE=bash_source qgjob" in (ROOT / "docs" / "adopting.md").read_text(encoding="utf-8")
    done = subprocess.run([str(installed / "qgjob")], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"_QGJOB_COMPLETE": "bash_source", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "_qgjob_completion()" in done.stdout
    assert "complete -o nosort -F _qgjob_completion qgjob" in done.stdout


def test_the_dockerfile_pip_command_installs_the_wheel_into_a_pipless_venv(wheel: Path, tmp_path: Path) -> None:
    """The build stage's own pip command line, with the built wheel for `.` and a dry run: catches a flag
    pip refuses (such as --python after `install`) without a Docker engine or the network."""
    build = next(stage for stage in dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8")) if stage.name == "build")
    (command,) = [run for run in build.all("RUN") if re.search(r"\bpip\b.*\binstall\b", run)]
    pip_line = command.split("&&")[0].removeprefix("RUN").strip()
    target = tmp_path / "opt-qualgent"
    venv.create(target, with_pip=False)  # as the Dockerfile does: python -m venv --without-pip
    assert pip_line.startswith("pip ")
    words = [str(target / "bin" / "python") if w == "/opt/qualgent/bin/python" else w for w in shlex.split(pip_line)]
    assert words[-1] == "."
    args = [sys.executable, "-m", *words[:-1], "--dry-run", "--no-deps", "--no-index", str(wheel)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Would install qualgent-" in done.stdout


@pytest.fixture(scope="module")
def client_only(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the GitHub Action installs: the wheel with --no-deps, plus the action's client requirements and
    what they require, borrowed (symlinked) from this environment; nothing of the server. Its bin directory."""
    root = tmp_path_factory.mktemp("client-only")
    where = root / "venv"
    venv.create(where, with_pip=False)
    python = where / "bin" / "python"
    done = _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", wheel, cwd=where)
    assert done.returncode == 0, done.stdout + done.stderr
    borrowed = root / "borrowed"
    borrowed.mkdir()
    names = {str(req.name) for req in layers.action_client_requirements()}
    for name in sorted(layers.requirement_closure(names)):
        dist = importlib.metadata.distribution(name)
        for top in {file.parts[0] for file in dist.files or []} - {"..", "__pycache__"}:
            if not (borrowed / top).exists():
                (borrowed / top).symlink_to(Path(str(dist.locate_file(top))))
    site = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=where).stdout.strip()
    Path(site, "borrowed-client-dependencies.pth").write_text(f"{borrowed}\n", encoding="utf-8")
    return where / "bin"


def test_the_client_alone_runs_its_commands(client_only: Path, tmp_path: Path) -> None:
    """The GitHub Action's install: client commands work; the server is not there at all."""
    missing = _run(client_only / "python", "-c", "import sqlalchemy", cwd=tmp_path)
    assert missing.returncode != 0, "the client-only install must not see the server's dependencies"
    for command in ("submit", "wait", "status", "agent", "token"):
        shown = _run(client_only / "qgjob", command, "--help", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
    listed = _run(client_only / "qgjob", "--help", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "submit" in listed.stdout
    assert "server" in listed.stdout
    done = _run(client_only / "qgjob", "submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "a.spec.ts",
                "--wait", "--json", "--api-url", "http://127.0.0.1:9/api", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "cannot reach the qualgent server" in done.stderr


def test_the_client_alone_says_what_a_server_command_needs(client_only: Path, tmp_path: Path) -> None:
    done = _run(client_only / "qgjob", "server", "--port", "3000", cwd=tmp_path)
    assert done.returncode == 2
    message = " ".join(done.stderr.replace("│", " ").split())  # rich wraps it in a box of 80 columns
    assert "`qgjob server` needs the full install" in message
    assert "pip install qualgent" in message
    assert "Traceback" not in done.stderr
