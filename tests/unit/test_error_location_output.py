"""A failed test's `file:line` (AppWright runs) in what CI reads: JUnit, GitHub annotations, the job's detail."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from qualgent.cli import outcomes


def _job(**result: Any) -> dict[str, Any]:
    return {
        "id": "6f1c0e2a-0000-4000-8000-000000000001",
        "org_id": "acme",
        "app_version_id": "v1",
        "target": "emulator",
        "test_path": "specs/b_fail.spec.ts",
        "status": "failed",
        "attempts": 2,
        "max_attempts": 3,
        "result": {"exit_code": 1, "duration_ms": 1200, "output_tail": "✘ shows the receipt", **result},
    }


def test_a_located_failure_is_annotated_on_its_line() -> None:
    job = _job(error="shows the receipt: Error: the receipt is shown", error_location="specs/b_fail.spec.ts:8")
    (line,) = outcomes.github_annotations([job])
    assert line.startswith("::error file=specs/b_fail.spec.ts,line=8,title=qualgent: specs/b_fail.spec.ts::")
    assert "at specs/b_fail.spec.ts:8: shows the receipt" in line


def test_a_failure_without_a_location_is_annotated_as_before() -> None:
    (line,) = outcomes.github_annotations([_job(error=None)])
    assert line.startswith("::error title=qualgent: specs/b_fail.spec.ts::")


def test_junit_and_the_detail_name_the_location(tmp_path: Path) -> None:
    job = _job(error="shows the receipt: Error: the receipt is shown", error_location="specs/b_fail.spec.ts:8")
    path = tmp_path / "junit.xml"
    outcomes.write_junit([job], path)
    root = ET.parse(path).getroot()  # noqa: S314 - our own file
    failure = root.find("./testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("message", "").startswith("test failed at specs/b_fail.spec.ts:8: shows the receipt")
    out = root.find("./testsuite/testcase/system-out")
    assert out is not None
    assert "at: specs/b_fail.spec.ts:8" in (out.text or "")
