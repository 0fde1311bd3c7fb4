"""deploy/: the Dockerfile (hadolint and its promises), the compose file (parses, names only files that
exist, every variable in .env.example, commands the CLI accepts) and the systemd unit. No Docker engine is
needed: what an engine would reject or run is checked against the files and the real CLI here."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest

from qualgent.cli.agent import agent
from tests.static.tools import DEPLOY, ROOT, Stage, dockerfile_stages, load_compose_yaml, tool

DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|make|build-essential|python3?-dev|libpq-dev|cargo|rustc)\b")


# --- Dockerfile -------------------------------------------------------------------------------------------


def _effective_user(stages: dict[str, Stage], name: str) -> str | None:
    stage = stages[name]
    users = stage.all("USER")
    if users:
        return users[-1]
    return _effective_user(stages, stage.base) if stage.base in stages else None


def test_hadolint_passes_on_the_dockerfile() -> None:
    done = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_reports_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM debian\nRUN apt-get update && apt-get install curl\nUSER root\n", encoding="utf-8")
    done = subprocess.run([tool("hadolint"), "--no-color", str(careless)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    for rule in ("DL3006", "DL3008", "DL3015", "DL3002"):  # untagged image, unpinned, recommends, root
        assert rule in done.stdout


def test_the_image_is_multi_stage_non_root_with_a_health_check() -> None:
    stages = {stage.name: stage for stage in dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))}
    ordered = list(stages)
    assert ordered[0] == "build"
    assert ordered[-1] == "server", "the default target (the last stage) is the server"
    for name in ("runtime", "agent", "server"):
        user = _effective_user(stages, name)
        assert user is not None
        assert user.split(":")[0].isdigit(), f"{name}: a numeric uid, so runAsNonRoot can check it"
        assert user.split(":")[0] != "0", f"{name} runs as root"

    health = stages["server"].all("HEALTHCHECK")
    assert len(health) == 1
    assert "/api/health" in health[0]
    assert stages["server"].all("CMD") == ['["server"]']
    assert stages["server"].all("EXPOSE") == ["3000"]
    assert stages["agent"].all("HEALTHCHECK") == ["NONE"], "an agent serves no HTTP: no failing health check"


def test_the_package_is_installed_from_the_repository_and_nothing_else_reaches_the_image() -> None:
    stages = {stage.name: stage for stage in dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))}
    build = stages["build"]
    installs = [run for run in build.all("RUN") if re.search(r"\bpip .*\binstall\b.*\s\.(\s|$)", run)]
    assert len(installs) == 1, "pip installs the package from the checkout (.)"
    # That the pip command line itself is valid is checked in test_packaging.py, with the built wheel.
    admitted = {
        line[1:].rstrip("/")
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    for copy in build.all("COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert source.rstrip("/") in admitted, f"COPY {source}: excluded by Dockerfile.dockerignore"
    for name in ("runtime", "agent", "server"):
        stage = stages[name]
        for copy in stage.all("COPY"):
            assert copy.startswith("--from=build /opt/qualgent "), f"{name}: copies only the virtualenv: {copy}"
        for run in stage.all("RUN"):
            assert not BUILD_TOOLS.search(run), f"{name} installs a build tool: {run}"
            if "apt-get install" in run:
                assert "--no-install-recommends" in run
                assert "rm -rf /var/lib/apt/lists/*" in run


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args: Any) -> None:
        pass


def _healthcheck_argv() -> list[str]:
    stages = {stage.name: stage for stage in dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))}
    command = stages["server"].all("HEALTHCHECK")[0].split(" CMD ", 1)[1]
    argv: list[str] = json.loads(command)
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def test_the_health_check_command_probes_api_health_on_qualgent_port() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**os.environ, "QUALGENT_PORT": str(server.server_address[1])}
        healthy = subprocess.run(_healthcheck_argv(), env=env, capture_output=True, text=True, timeout=30)
        assert healthy.returncode == 0, healthy.stderr
    finally:
        server.shutdown()
        server.server_close()
    unhealthy = subprocess.run(_healthcheck_argv(), env=env, capture_output=True, text=True, timeout=30)
    assert unhealthy.returncode != 0, "nothing listens any more: the check must fail"


# --- compose.yaml -----------------------------------------------------------------------------------------


def _dotenv(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value
    return values


_VARIABLE = re.compile(r"\$(\$|\{(\w+)(?:(:?[-?])([^}]*))?\})")


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's rules for what we use: $$, ${X}, ${X:-default}, ${X:?error}."""

    def one(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        name, op, arg = match.group(2), match.group(3), match.group(4)
        value = env.get(name, "")
        if op == ":-" and not value:
            return str(arg)
        if op == ":?" and not value:
            raise AssertionError(f"{name} is required: {arg}")
        return value

    return _VARIABLE.sub(one, value)


def _resolved(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return _interpolate(node, env)
    if isinstance(node, list):
        return [_resolved(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _resolved(item, env) for key, item in node.items()}
    return node


@pytest.fixture
def compose() -> dict[str, Any]:
    document: dict[str, Any] = _resolved(load_compose_yaml(COMPOSE), _dotenv(ENV_EXAMPLE))
    return document


def test_every_variable_compose_reads_is_in_env_example() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    used = {m.group(2) for m in _VARIABLE.finditer(text) if m.group(2)}
    defined = set(_dotenv(ENV_EXAMPLE))
    assert used - defined == set(), "read by compose.yaml, missing from .env.example"
    assert defined - used == set(), "in .env.example, never read by compose.yaml"
    assert (DEPLOY / ".gitignore").read_text(encoding="utf-8").split() == [".env"], "deploy/.env holds secrets"


def test_env_example_database_url_matches_the_postgres_service() -> None:
    env = _dotenv(ENV_EXAMPLE)
    url = urlsplit(env["QUALGENT_DATABASE_URL"])
    assert (url.username, url.password) == (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])
    assert (url.hostname, url.port, url.path) == ("postgres", 5432, "/" + env["POSTGRES_DB"])
    assert "change-me" in env["QUALGENT_ADMIN_TOKEN"], "no usable secret is committed"


def test_compose_names_only_files_that_exist(compose: dict[str, Any]) -> None:
    targets = {stage.name for stage in dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))}
    for name, service in compose["services"].items():
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert (context / "pyproject.toml").is_file(), f"{name}: the build context is the repository root"
            assert (context / service["build"]["dockerfile"]).resolve() == DOCKERFILE
            assert service["build"]["target"] in targets, f"{name}: no stage {service['build']['target']}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} is not declared"
        for env_file in service.get("env_file", []):
            raise AssertionError(f"{name}: env_file {env_file}; variables come from deploy/.env by interpolation")


def test_the_stack_has_postgres_migrations_two_servers_and_scalable_agents(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "api-1", "api-2", "agent"}

    postgres = services["postgres"]
    source = postgres["volumes"][0].split(":")[0]
    assert source in compose["volumes"], "PostgreSQL's data is on a named volume"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])

    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}

    ports = []
    for name in ("api-1", "api-2"):
        api = services[name]
        assert api["command"] == ["server"]
        assert api["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
        assert api["environment"]["QUALGENT_DATABASE_URL"] == _dotenv(ENV_EXAMPLE)["QUALGENT_DATABASE_URL"]
        assert api["environment"]["QUALGENT_ADMIN_TOKEN"]
        assert api["networks"]["default"]["aliases"] == ["api"]
        ports += [port.rsplit(":", 2)[1] for port in api["ports"]]
    assert len(set(ports)) == 2

    agent_service = services["agent"]
    assert "container_name" not in agent_service, "--scale agent=N needs containers named by compose"
    assert "ports" not in agent_service, "--scale agent=N cannot bind one host port several times"
    assert agent_service["environment"]["QGJOB_API_URL"] == "http://api:3000/api"


def _agent_argv(compose: dict[str, Any], bin_dir: Path, **overrides: str) -> list[str]:
    """Run the agent service's entrypoint with sh, as the container would, with a qgjob that prints its argv."""
    service = compose["services"]["agent"]
    fake = bin_dir / "qgjob"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n", encoding="utf-8")
    fake.chmod(0o755)
    env = {**service["environment"], **overrides, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    done = subprocess.run([*service["entrypoint"], *service["command"]], env=env, capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    argv: list[str] = json.loads(done.stdout)
    return argv


@pytest.mark.parametrize("install", ["", "docs/examples/browserstack-upload.sh {app_version_id}"])
def test_the_agent_service_command_is_one_qgjob_agent_accepts(
    compose: dict[str, Any], tmp_path: Path, install: str
) -> None:
    argv = _agent_argv(compose, tmp_path, QGJOB_AGENT_INSTALL=install)
    assert argv[0] == "agent"
    context = agent.make_context("agent", argv[1:])  # raises click.UsageError/BadParameter on a bad flag
    assert context.params["targets"] == ("browserstack",)
    assert context.params["run_"].words[-1] == "{test_path}"
    assert (context.params["install"] is None) == (not install)


def test_a_bad_agent_command_is_refused_by_that_check(compose: dict[str, Any], tmp_path: Path) -> None:
    argv = _agent_argv(compose, tmp_path, QGJOB_AGENT_RUN="npx appwright test {tset_path}")
    with pytest.raises(click.BadParameter):
        agent.make_context("agent", argv[1:])


# --- systemd ----------------------------------------------------------------------------------------------


def _unit(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(("#", ";", "[")) or not line.strip():
            continue
        pending += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            key, _, value = pending.partition("=")
            values[key] = value
            pending = ""
    return values


def test_the_systemd_unit_runs_a_qgjob_agent_command_the_cli_accepts() -> None:
    unit = _unit(DEPLOY / "systemd" / "qgjob-agent@.service")
    env = _dotenv(DEPLOY / "systemd" / "agent.env.example")
    assert unit["EnvironmentFile"] == "/etc/qualgent/agent-%i.env"
    argv = []
    for word in shlex.split(unit["ExecStart"].replace("%H", "host").replace("%i", "pixel7")):
        # systemd: "${X}" as a word is replaced by X's whole value as exactly one argument.
        match = re.fullmatch(r"\$\{(\w+)\}", word)
        argv.append(env[match.group(1)] if match else word)
    assert argv[0].endswith("/bin/qgjob")
    assert argv[1] == "agent"
    context = agent.make_context("agent", argv[2:])
    assert context.params["name"] == "host-pixel7"
    assert context.params["targets"] == ("device",)
    assert unit["KillSignal"] == "SIGTERM"
    assert unit["KillMode"] == "mixed", "only the agent gets SIGTERM; the running test is left to finish"
    assert int(unit["TimeoutStopSec"]) > context.params["test_timeout"], "stop must outlast a running test"
