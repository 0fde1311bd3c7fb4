"""Log lines carry the agent, group and job ids, as text for people or JSON for pipelines."""

from __future__ import annotations

import contextvars
import io
import json
import logging

import pytest

from qualgent import logs


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("qualgent.agent", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


def _in_fresh_context(func: object) -> object:
    return contextvars.Context().run(func)  # type: ignore[arg-type]


def test_json_lines_have_the_bound_ids_and_the_ones_passed_as_extra() -> None:
    def run() -> dict[str, object]:
        logs.bind(agent_id="a-1", group_id="g-1")
        logs.bind(job_id="j-1")
        return json.loads(logs.JsonFormatter().format(_record("job %s done", org_id="acme")))  # type: ignore[no-any-return]

    entry = _in_fresh_context(run)
    assert entry == {
        "time": entry["time"],  # type: ignore[index]
        "level": "info",
        "logger": "qualgent.agent",
        "message": "job %s done",
        "agent_id": "a-1",
        "group_id": "g-1",
        "job_id": "j-1",
        "org_id": "acme",
    }


def test_text_lines_end_with_the_ids_and_unbinding_removes_them() -> None:
    def run() -> tuple[str, str]:
        logs.bind(agent_id="a-1", job_id="j-1")
        with_ids = logs.TextFormatter().format(_record("running"))
        logs.bind(job_id=None)
        return with_ids, logs.TextFormatter().format(_record("idle"))

    with_ids, without_job = _in_fresh_context(run)  # type: ignore[misc]
    assert with_ids.endswith("qualgent.agent: running [agent_id=a-1 job_id=j-1]")
    assert without_job.endswith("qualgent.agent: idle [agent_id=a-1]")


def test_ids_do_not_leak_into_other_contexts() -> None:
    _in_fresh_context(lambda: logs.bind(job_id="elsewhere"))
    assert "job_id" not in logs.TextFormatter().format(_record("here"))


def test_unknown_fields_and_formats_are_refused() -> None:
    with pytest.raises(ValueError, match="user"):
        logs.bind(user="x")
    with pytest.raises(ValueError, match="yaml"):
        logs.configure_logging("info", "yaml")  # type: ignore[arg-type]


def test_configure_logging_json_formats_every_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.configure_logging("info", "json")
        logging.getLogger("uvicorn.error").info("Started server process")
        logging.getLogger("qualgent.server").warning("rescued %d claim(s)", 2)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("uvicorn.error", "Started server process"),
        ("qualgent.server", "rescued 2 claim(s)"),
    ]
