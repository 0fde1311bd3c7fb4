"""The qgjob composite action's scripts, run by bash as a GitHub runner would run them, against a real
server and agent: outputs, JUnit, step summary, the verdict's exit code, and a retried step reusing its jobs.

The two steps before (setup-python, pip install) need GitHub and the network; here the action's
virtualenv is this test's own (the wheel install is tested in tests/static/test_packaging.py). The case
where qgjob stops before any result (server unreachable: it retries for a minute first) is covered by
tests/static/test_github.py on the outputs script.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Server, agent, clean_env, fake_appwright
from tests.static.tools import ACTION_DIR, load_github_yaml

pytestmark = pytest.mark.e2e


def _expression(expression: str, inputs: dict[str, str], steps: dict[str, dict[str, str]]) -> str:
    def one(match: re.Match[str]) -> str:
        path = match.group(1).strip().split(".")
        if path[0] == "inputs":
            return inputs[path[1]]
        assert path[0] == "steps"
        assert path[2] == "outputs"
        return steps[path[1]][path[3]]

    return re.sub(r"\$\{\{(.*?)\}\}", one, expression)


class Runner:
    """Just enough of a GitHub runner for the action's `run` steps."""

    def __init__(self, tmp: Path, **inputs: str) -> None:
        self.action: dict[str, Any] = load_github_yaml(ACTION_DIR / "action.yml")
        declared = self.action["inputs"]
        self.inputs = {name: spec.get("default", "") for name, spec in declared.items()} | inputs
        self.tmp = tmp
        self.summary = tmp / "step-summary.md"
        self.steps: dict[str, dict[str, str]] = {"install": {"venv": str(Path(sys.executable).parent.parent)}}

    def step(self, name: str) -> tuple[int, dict[str, str], str]:
        step = next(s for s in self.action["runs"]["steps"] if s.get("id", s["name"]) == name)
        output = self.tmp / f"output-{name}"
        output.write_text("", encoding="utf-8")
        env = clean_env(
            GITHUB_ACTIONS="true",
            GITHUB_RUN_ID="4242",
            GITHUB_RUN_ATTEMPT="1",
            GITHUB_REPOSITORY="acme/app",
            GITHUB_JOB="e2e",
            GITHUB_OUTPUT=str(output),
            GITHUB_STEP_SUMMARY=str(self.summary),
            GITHUB_ACTION_PATH=str(ACTION_DIR),
            RUNNER_TEMP=str(self.tmp),
        )
        env |= {key: _expression(value, self.inputs, self.steps) for key, value in step.get("env", {}).items()}
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=self.tmp,
                              env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        outputs = dict(line.split("=", 1) for line in output.read_text(encoding="utf-8").splitlines())
        self.steps[name] = outputs
        return done.returncode, outputs, done.stdout + done.stderr


def _run_action(server: Server, tmp: Path, tests: str) -> tuple[Runner, dict[str, str], int, str]:
    runner = Runner(tmp, **{"api-url": server.api_url, "org-id": "acme", "app-version-id": "abc123", "tests": tests,
                            "timeout": "90", "junit-file": "reports/junit.xml"})  # fmt: skip
    code, outputs, log = runner.step("submit")
    assert code == 0, log  # the submit step always succeeds so its outputs are kept
    verdict, _, verdict_log = runner.step("Verdict")
    return runner, outputs, verdict, log + verdict_log


def test_the_action_passes_when_every_test_passes(server: Server, tmp_path: Path) -> None:
    script, _ = fake_appwright(tmp_path)
    with agent(server.api_url, script, tmp_path / "agent.log"):
        runner, outputs, verdict, log = _run_action(server, tmp_path, "tests/login.spec.ts\n  tests/cart.spec.ts  \n\n")
    assert verdict == 0, log
    assert (outputs["total"], outputs["passed"], outputs["failed"], outputs["exit-code"]) == ("2", "2", "0", "0")
    assert "2 of 2 test(s) passed" in log
    junit = tmp_path / "reports" / "junit.xml"
    assert outputs["junit-file"] == "reports/junit.xml"
    assert 'tests="2"' in junit.read_text(encoding="utf-8")
    assert "qualgent: 2 test(s): 2 passed" in runner.summary.read_text(encoding="utf-8")
    document = json.loads(Path(outputs["result-file"]).read_text(encoding="utf-8"))
    assert sorted(job["test_path"] for job in document["jobs"]) == ["tests/cart.spec.ts", "tests/login.spec.ts"]

    # A retried step of the same run attempt finds the jobs it queued instead of queuing them again.
    code, again, retry_log = runner.step("submit")
    assert code == 0, retry_log
    assert json.loads(again["job-ids"]) == json.loads(outputs["job-ids"])


def test_the_action_fails_exactly_when_a_test_fails(server: Server, tmp_path: Path) -> None:
    script, _ = fake_appwright(tmp_path)
    with agent(server.api_url, script, tmp_path / "agent.log"):
        _, outputs, verdict, log = _run_action(server, tmp_path, "tests/login.spec.ts\ntests/checkout-fail.spec.ts")
    assert verdict == 1, log
    assert (outputs["passed"], outputs["failed"], outputs["infra-errors"], outputs["exit-code"]) == ("1", "1", "0", "1")
    assert "::error title=qualgent: tests/checkout-fail.spec.ts::" in log
    assert "1 of 2 test(s) passed; qgjob exited 1" in log
