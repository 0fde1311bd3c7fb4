"""Logging for `qgjob server` and `qgjob agent`: one line per event on stderr, as text for people or as
JSON for log pipelines (`--log-format json`, env QUALGENT_LOG_FORMAT=json).

Ids travel with the records: `bind(agent_id=..., group_id=..., job_id=...)` puts them in a context
variable (so they follow the asyncio task that set them, and the tasks it starts), and a logging call can
also pass them as `extra={"job_id": ...}`. Text lines end with them as key=value; JSON has them as fields.

    {"time": "2026-11-28T18:32:22.020Z", "level": "info", "logger": "qualgent.agent",
     "message": "job 8db5... completed (exit 0, 3 ms)", "agent_id": "4178...", "group_id": "2c1e...",
     "job_id": "8db5...", "org_id": "acme", "app_version_id": "v2"}
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from typing import Any, Literal

FIELDS = ("agent_id", "group_id", "job_id", "org_id", "app_version_id")
"""The ids a record may carry, in the order they are printed."""

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")

_bound: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("qualgent_log_ids", default={})  # noqa: B039 - never mutated, replaced


def bind(**ids: object) -> None:
    """Attach ids to every record logged from here on in this task (None removes one)."""
    current = dict(_bound.get())
    for name, value in ids.items():
        if name not in FIELDS:
            raise ValueError(f"unknown log field {name!r}; one of {', '.join(FIELDS)}")
        if value is None:
            current.pop(name, None)
        else:
            current[name] = str(value)
    _bound.set(current)


def _ids(record: logging.LogRecord) -> dict[str, str]:
    ids = dict(_bound.get())
    for name in FIELDS:
        value = record.__dict__.get(name)
        if value is not None:
            ids[name] = str(value)
    return {name: ids[name] for name in FIELDS if name in ids}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = _ids(record)
        return f"{line} [{' '.join(f'{k}={v}' for k, v in ids.items())}]" if ids else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_ids(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "info", log_format: LogFormat = "text") -> None:
    """One handler on the root logger, for ours and every library's records (uvicorn's included)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns what the agent says
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # uvicorn's own handlers would print text
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)  # the root's level, until uvicorn.Config sets its own
        logger.propagate = True
