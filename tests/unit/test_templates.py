from __future__ import annotations

import pytest

from qualgent.agent.templates import CommandTemplate, TemplateError


def test_a_template_splits_like_a_shell_and_formats_each_word() -> None:
    template = CommandTemplate.parse("npx appwright test --project 'android {target}' {test_path}")
    argv = template.render(app_version_id="v1", test_path="tests/a.spec.ts", target="emulator", job_id="j", org_id="o")
    assert argv == ["npx", "appwright", "test", "--project", "android emulator", "tests/a.spec.ts"]


def test_a_hostile_value_stays_one_argument() -> None:
    template = CommandTemplate.parse("run {test_path}")
    argv = template.render(test_path="a.spec.js; touch /tmp/x $(id) `id`", app_version_id="", target="", job_id="",
                           org_id="")  # fmt: skip
    assert argv == ["run", "a.spec.js; touch /tmp/x $(id) `id`"]


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("", "empty"),
        ("run {nope}", "unknown placeholder {nope}"),
        ("run {test_path.__class__}", "unknown placeholder"),
        ("run {test_path[0]}", "unknown placeholder"),
        ("run {test_path!r}", "unknown placeholder"),
        ("run 'unclosed", "cannot split"),
        ("run {", "bad placeholder"),
    ],
)
def test_bad_templates_are_refused_with_the_reason(line: str, complaint: str) -> None:
    with pytest.raises(TemplateError, match=complaint.replace("{", r"\{").replace("}", r"\}").replace(".", r"\.")):
        CommandTemplate.parse(line)


def test_literal_braces_are_written_doubled() -> None:
    assert CommandTemplate.parse("echo {{x}}").render() == ["echo", "{x}"]
