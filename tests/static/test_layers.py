"""Client and server apart (docs/design.md, "Layout"): what CI runners and device hosts run imports nothing of
the server, read from the source (every import, inside functions too) and observed in real `qgjob` processes;
the shared core imports no framework; the package has no import cycles."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import click
import pytest

from qualgent.cli.main import CLIENT_COMMANDS, COMMANDS, cli
from tests.static.layers import (
    SERVER_DISTRIBUTION_MODULES,
    client_roots,
    graph,
    import_cycles,
    is_server,
    reached,
    third_party,
)

# PRODUCT.md, "CLI behaviour in CI": the client commands (those of them this build has).
PRODUCT_CLIENT_COMMANDS = ("submit", "wait", "status", "list", "cancel", "retry", "report", "top", "agent")
SHARED_CORE = ("qualgent", "qualgent.wire", "qualgent.domain", "qualgent.logs", "qualgent.cli.exit_codes")
UNREACHABLE = "http://127.0.0.1:9/api"  # the discard port on loopback: connection refused


# Runs a module or script as `python -m` / `python script` would, and at exit (sys.exit included) writes every
# module in sys.modules to the file named first. (-X importtime misses what importlib.import_module loads.)
_RECORDER = """
import atexit, runpy, sys
out, kind, target, *args = sys.argv[1:]
atexit.register(lambda: open(out, "w", encoding="utf-8").write("\\n".join(sorted(sys.modules))))
sys.argv = [target, *args]
if kind == "-m":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    runpy.run_path(target, run_name="__main__")
"""


def loaded(*args: str, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `python <args>` ("-m module ..." or "script ...") and return the process and the modules it loaded."""
    with tempfile.TemporaryDirectory() as where:
        out = Path(where) / "modules"
        kind = ["-m"] if args[0] == "-m" else ["path"]
        command = [sys.executable, "-c", _RECORDER, str(out), *kind, *(args[1:] if args[0] == "-m" else args)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd)
        names = set(out.read_text(encoding="utf-8").split("\n")) if out.exists() else set()
    assert "rich_click" in names, done.stderr[-2000:]  # the check must see the imports, or it passes on nothing
    return done, names


def server_side(names: set[str]) -> list[str]:
    return sorted(n for n in names if is_server(n) or n.split(".")[0] in SERVER_DISTRIBUTION_MODULES)


def test_the_command_table_names_each_command() -> None:
    assert set(PRODUCT_CLIENT_COMMANDS) <= set(CLIENT_COMMANDS) <= set(COMMANDS)
    context = click.Context(cli)
    assert cli.list_commands(context)[: len(COMMANDS)] == list(COMMANDS)
    for name in COMMANDS:
        command = cli.get_command(context, name)
        assert isinstance(command, click.Command)
        assert command.name == name


def test_client_modules_import_nothing_of_the_server() -> None:
    edges = graph()
    client = reached(client_roots(), edges)
    assert "qualgent.cli.jobs" in client
    assert "qualgent.agent.loop" in client
    assert server_side(client) == []


def test_the_checks_see_a_server_import() -> None:
    """The graph check is not blind: the server's own commands do reach the server."""
    edges = graph()
    assert "qualgent.server.api.app" in reached(["qualgent.cli.server"], edges)
    assert "sqlalchemy" in {n.split(".")[0] for n in reached(["qualgent.cli.prune"], edges)}


def _in_core(module: str) -> bool:
    # "qualgent.cli" itself: the empty __init__ that qualgent.cli.exit_codes needs.
    return module == "qualgent.cli" or any(module == c or module.startswith(c + ".") for c in SHARED_CORE[1:])


def test_the_shared_core_imports_no_framework() -> None:
    edges = graph()
    for module in SHARED_CORE:
        names = reached([module], edges)
        assert {n for n in names if n.startswith("qualgent.") and not _in_core(n)} == set(), module
        assert third_party(names) <= {"msgspec"}, (module, third_party(names))


def test_no_import_cycles() -> None:
    """Module-level imports form no cycle (a module importing its own package's __init__ does not count)."""
    assert import_cycles(graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    edges = graph()
    edges["qualgent.wire"].eager.add("qualgent.cli.common")  # cli.common imports wire: now a cycle
    assert import_cycles(edges) == [["qualgent.cli.common", "qualgent.wire"]]


@pytest.mark.parametrize("command", CLIENT_COMMANDS)
def test_a_client_command_loads_no_server_module(command: str) -> None:
    done, names = loaded("-m", "qualgent", command, "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    assert COMMANDS[command].partition(":")[0] in names
    assert server_side(names) == []


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--job-id", str(uuid.uuid4())],
        ["submit", "--org-id", "acme", "--app-version-id", "v1", "--test", "tests/a.spec.ts", "--wait"],
        ["list", "--json"],
    ],
    ids=["status", "submit", "list"],
)
def test_a_client_command_at_work_loads_no_server_module(args: list[str]) -> None:
    """Past --help: the command talks HTTP (to nobody here) and still loads nothing of the server."""
    done, names = loaded("-m", "qualgent", *args, "--api-url", UNREACHABLE)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "cannot reach the qualgent server" in done.stderr
    assert "httpx" in names
    assert server_side(names) == []


def test_server_commands_load_only_when_run() -> None:
    done, names = loaded("-m", "qualgent", "--version")
    assert done.returncode == 0
    assert not {n for n in names if n.startswith("qualgent.cli.") and n not in {"qualgent.cli.main"}} - {
        "qualgent.cli.exit_codes"
    }
    done, names = loaded("-m", "qualgent", "server", "--help")
    assert done.returncode == 0
    assert "qualgent.cli.server" in names


def test_submit_help_loads_few_modules(tmp_path: Path) -> None:
    """`qgjob submit --help` loads about what a bare rich-click command's --help does (the timing of both is in
    docs/performance.md); the whole CLI once loaded ~1,100 modules."""
    bare = tmp_path / "bare.py"
    bare.write_text(
        "import rich_click as click\n\n\n@click.command()\n@click.option('--name', help='Who.')\n"
        "def hello(name):\n    'Say hello.'\n\n\nhello()\n",
        encoding="utf-8",
    )
    done, baseline = loaded(str(bare), "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    done, submit = loaded("-m", "qualgent", "submit", "--help")
    assert done.returncode == 0
    assert len(submit) <= 1.5 * len(baseline), sorted(submit - baseline)
