"""`qgjob top`: the queue, its groups, the agents and the latest results, refreshed in place."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import rich_click as click
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from qualgent.cli.client import ApiClient
from qualgent.cli.common import api_options, client
from qualgent.cli.output import console, status_text
from qualgent.cli.report import seconds


@click.command()
@click.option(
    "--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True, help="Seconds between refreshes."
)
@click.option("--rows", type=click.IntRange(1, 200), default=10, show_default=True, help="Rows per table.")
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts and logs).")
@api_options
def top(interval: float, rows: int, once: bool, api_url: str, token: str | None) -> None:
    """A live view of the queue: what waits (by priority and target), the groups pending and running,
    the agents, and the latest results. Ctrl-C to leave."""
    with client(api_url, token) as api:
        if once:
            console.print(frame(read(api, rows), rows))
            return
        with Live(console=console, screen=False, auto_refresh=False) as live:
            try:
                while True:
                    live.update(frame(read(api, rows), rows), refresh=True)
                    time.sleep(interval)
            except KeyboardInterrupt:
                pass


def read(api: ApiClient, rows: int) -> dict[str, Any]:
    return {
        "queue": api.get("/jobs/queue/status"),
        "agents": api.get("/agents"),
        "recent": api.get("/reports/recent-results", limit=rows)["rows"],
        "at": dt.datetime.now().astimezone(),
    }


def frame(data: dict[str, Any], rows: int) -> Group:
    queue = data["queue"]
    agents = data["agents"]
    busy = sum(1 for a in agents if a["status"] == "busy")
    idle = sum(1 for a in agents if a["status"] == "idle")
    headline = Text.assemble(
        ("qgjob top ", "bold"),
        f"{data['at']:%H:%M:%S}   ",
        ("pending ", "bold"),
        f"{queue['pending']} ",
        f"(high {queue['pending_by_priority']['high']}, medium {queue['pending_by_priority']['medium']}, "
        f"low {queue['pending_by_priority']['low']})   ",
        ("running ", "bold"),
        f"{queue['running']}   ",
        ("oldest wait ", "bold"),
        f"{seconds(queue['oldest_wait_seconds'])}   ",
        ("agents ", "bold"),
        f"{busy} busy, {idle} idle, {len(agents) - busy - idle} offline",
    )
    return Group(
        headline,
        _groups(queue["groups"]["running"][:rows], "Running groups"),
        _groups(queue["groups"]["pending"][:rows], "Waiting groups, next first"),
        _agents(agents[:rows]),
        _recent(data["recent"]),
    )


def _groups(groups: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold", expand=True)
    for column in ("org", "tier", "app version", "target", "priority", "pending", "running", "agent", "since"):
        table.add_column(column, overflow="ellipsis", no_wrap=True)
    for g in groups:
        table.add_row(
            g["org_id"],
            g["tier"],
            g["app_version_id"],
            g["target"],
            g["best_priority"],
            str(g["pending"]),
            str(g["running"]),
            str(g["agent_id"] or "-")[:8],
            _ago(g["claimed_at"] or g["oldest_job_at"]),
        )
    return table


def _agents(agents: list[dict[str, Any]]) -> Table:
    table = Table(title="Agents", title_justify="left", header_style="bold", expand=True)
    for column in ("name", "status", "targets", "group", "last heartbeat"):
        table.add_column(column, overflow="ellipsis", no_wrap=True)
    for a in agents:
        style = {"busy": "cyan", "idle": "green"}.get(a["status"], "red")
        table.add_row(
            a["name"],
            f"[{style}]{a['status']}[/{style}]",
            ", ".join(a["targets"]),
            str(a.get("group_id") or "-")[:8],
            _ago(a["last_heartbeat_at"]),
        )
    return table


def _recent(jobs: list[dict[str, Any]]) -> Table:
    table = Table(title="Latest results", title_justify="left", header_style="bold", expand=True)
    for column in ("finished", "org", "app version", "test", "target", "status", "run", "attempts"):
        table.add_column(column, overflow="ellipsis", no_wrap=True)
    for j in jobs:
        duration = j["duration_ms"] / 1000 if j["duration_ms"] is not None else None
        table.add_row(
            _ago(j["finished_at"]),
            j["org_id"],
            j["app_version_id"],
            j["test_path"],
            j["target"],
            status_text(j["status"]),
            seconds(duration),
            str(j["attempts"]),
        )
    return table


def _ago(value: str | None) -> str:
    if not value:
        return "-"
    moment = dt.datetime.fromisoformat(value)
    return f"{seconds(max(0.0, (dt.datetime.now(dt.UTC) - moment).total_seconds()))} ago"
