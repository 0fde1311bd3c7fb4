"""Prometheus metrics of one server process.

Two kinds:
- Events this process saw, counted as they happen by small hooks where they happen (queue operations,
  the claim route, the rescue loop): jobs finished, test durations, queue waits, claim latency, rescued
  leases. Each server counts its own; Prometheus sums the servers.
- The state of the queue, read from PostgreSQL when /metrics is scraped (queue depth, groups, agents):
  a few aggregate queries over pending and running rows only, never one per job and never over the
  finished history, and cached for SNAPSHOT_TTL seconds so many scrapers cost one read. These are the
  same for every server; `sum` across servers over-counts them, use `max`.

Every name starts with `qualgent_`. The instruments live in REGISTRY, which is not prometheus_client's
global registry, so embedding qualgent never collides with an application's own metrics.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import itertools
import math
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from qualgent import __version__

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SNAPSHOT_TTL = 5.0

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

JOBS_FINISHED = Counter(
    "qualgent_jobs_finished",
    "Jobs that reached a final status in this process, by status and target.",
    ["status", "target"],
    registry=REGISTRY,
)


class BatchHistogram(Collector):
    """A histogram observed a batch at a time: a progress report records the runs of up to a thousand jobs, and
    prometheus_client's Histogram takes two locks and checks its state for every single observation. This one
    takes one lock per batch and keeps plain counts; the exposition is the same (_bucket, _count, _sum)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float], registry: Any
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self.bounds = [*sorted(float(b) for b in buckets), math.inf]
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}  # labels -> bucket counts, [sum]
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, labels: tuple[str, ...], values: Iterable[float]) -> None:
        with self._lock:
            counts, total = self._series.get(labels) or self._series.setdefault(labels, ([0] * len(self.bounds), [0.0]))
            for value in values:
                counts[bisect.bisect_left(self.bounds, value)] += 1  # the first bucket whose bound is >= value
                total[0] += value

    def collect(self) -> Iterable[Any]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            series = [(labels, list(counts), total[0]) for labels, (counts, total) in self._series.items()]
        for labels, counts, total in series:
            cumulative = itertools.accumulate(counts)
            buckets = [(_bound_text(le), float(n)) for le, n in zip(self.bounds, cumulative, strict=True)]
            family.add_metric(list(labels), buckets, total)
        yield family


def _bound_text(bound: float) -> str:
    """A bucket's `le` as Prometheus writes it: 1.0, 2.5, +Inf."""
    return "+Inf" if math.isinf(bound) else repr(bound)


TEST_DURATION = BatchHistogram(
    "qualgent_test_duration_seconds",
    "Run time of finished tests (the last attempt), as the agent reported it.",
    ["target", "status"],
    buckets=(1, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800),
    registry=REGISTRY,
)
QUEUE_WAIT = BatchHistogram(
    "qualgent_queue_wait_seconds",
    "Time from submission to a job's first start.",
    ["target", "priority"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
    registry=REGISTRY,
)
CLAIM_LATENCY = Histogram(
    "qualgent_claim_duration_seconds",
    "Time the claim transaction took, by whether it found a group.",
    ["result"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
LEASES_RESCUED = Counter(
    "qualgent_leases_rescued",
    "Claims handed back by this process's rescue loop because their lease lapsed (the agent was presumed dead).",
    registry=REGISTRY,
)
TOKEN_CHECKS = Counter(
    "qualgent_token_checks",
    "Bearer tokens this process found live, by where it found them: memory (its token cache) or database.",
    ["source"],
    registry=REGISTRY,
)

_FINAL = frozenset({"completed", "failed", "cancelled"})
P = ParamSpec("P")
R = TypeVar("R")


# -- hooks: called where the event happens; each is one cheap, failure-free call. A change counted
# inside its transaction is counted even if that transaction then fails to commit (rare; Prometheus
# counters are for rates, not ledgers: the reporting views are the exact record). ------------------


def job_finished(job: Mapping[Any, Any]) -> None:
    """A job reached a final status (a row of `jobs` as it is now)."""
    jobs_finished([job])


def jobs_finished(jobs: Iterable[Mapping[Any, Any]]) -> None:
    """Jobs that reached a final status, counted a batch at a time (a progress report's)."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    for job in jobs:
        status = str(job["status"])
        if status not in _FINAL:
            continue
        target = str(job["target"])
        counts[status, target] += 1
        if status != "cancelled" and job.get("duration_ms") is not None:
            durations[target, status].append(job["duration_ms"] / 1000)
    for (status, target), count in counts.items():
        _labelled(JOBS_FINISHED, status, target).inc(count)
    for labels, seconds in durations.items():
        TEST_DURATION.observe_many(labels, seconds)


def jobs_started(jobs: Iterable[Mapping[Any, Any]]) -> None:
    """Attempts that started, a batch at a time; a job's first start ends its queue wait."""
    waits: dict[tuple[str, str], list[float]] = defaultdict(list)
    for job in jobs:
        if job.get("attempts") != 1:
            continue
        wait = job.get("queue_wait_seconds")  # given by the one-statement report (qualgent_report_runs)
        if wait is None:
            started, created = job.get("started_at"), job.get("created_at")
            if not (isinstance(started, dt.datetime) and isinstance(created, dt.datetime)):
                continue
            wait = (started - created).total_seconds()
        waits[str(job["target"]), _text(job["priority"])].append(max(0.0, wait))
    for labels, seconds in waits.items():
        QUEUE_WAIT.observe_many(labels, seconds)


@functools.cache
def _labelled(metric: Any, *values: str) -> Any:
    """A metric's child for these label values, looked up once: labels() takes a lock and checks its arguments
    on every call, and the hooks run for every job. (Label values are few: statuses, targets, priorities.)"""
    return metric.labels(*values)


def timed_claim(claim: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Decorates the claim operation: its duration, labelled claimed (a group), empty (none) or error."""

    @functools.wraps(claim)
    async def timed(*args: P.args, **kwargs: P.kwargs) -> R:
        started, result = time.perf_counter(), "error"
        try:
            got = await claim(*args, **kwargs)
            result = "empty" if got is None else "claimed"
            return got
        finally:
            CLAIM_LATENCY.labels(result).observe(time.perf_counter() - started)

    return timed


def token_checked(from_memory: bool) -> None:
    _labelled(TOKEN_CHECKS, "memory" if from_memory else "database").inc()


def leases_rescued(count: int) -> None:
    if count > 0:
        LEASES_RESCUED.inc(count)


# -- the queue's state, from the database ------------------------------------------------------------


class StateCollector(Collector):
    """The gauges of one snapshot of the queue (qualgent.server.queue.stats.gauges) and of the LISTEN hub."""

    def __init__(self, snapshot: Mapping[str, Any] | None, listen: Mapping[str, Any] | None) -> None:
        self.snapshot = snapshot
        self.listen = listen

    def collect(self) -> Iterable[Any]:
        up = GaugeMetricFamily("qualgent_database_up", "1 when the last read of the queue's state succeeded.")
        up.add_metric([], 1.0 if self.snapshot is not None else 0.0)
        yield up
        info = GaugeMetricFamily("qualgent_build_info", "The running qualgent version.", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info
        if self.listen is not None:
            yield from _listen_families(self.listen)
        if self.snapshot is not None:
            yield from _state_families(self.snapshot)


def _state_families(snapshot: Mapping[str, Any]) -> Iterable[Any]:
    depth = GaugeMetricFamily(
        "qualgent_queue_depth",
        "Pending jobs not yet claimed, by target, job priority and org tier.",
        labels=["target", "priority", "tier"],
    )
    for row in snapshot["queue"]:
        depth.add_metric([row["target"], row["priority"], row["tier"]], row["jobs"])
    yield depth
    groups = GaugeMetricFamily(
        "qualgent_groups", "Job groups waiting (pending) or held by an agent (running).", labels=["target", "status"]
    )
    for row in snapshot["groups"]:
        groups.add_metric([row["target"], row["status"]], row["groups"])
    yield groups
    running = GaugeMetricFamily("qualgent_jobs_running", "Jobs running on an agent now.", labels=["target"])
    for row in snapshot["running"]:
        running.add_metric([row["target"]], row["jobs"])
    yield running
    oldest = GaugeMetricFamily(
        "qualgent_oldest_wait_seconds", "Age of the oldest runnable pending job.", labels=["target"]
    )
    for target, seconds in snapshot["oldest_wait_seconds"].items():
        oldest.add_metric([target], seconds)
    yield oldest
    agents = GaugeMetricFamily(
        "qualgent_agents", "Registered agents by status and a target they serve.", labels=["target", "status"]
    )
    for row in snapshot["agents"]:
        agents.add_metric([row["target"], row["status"]], row["agents"])
    yield agents


def _listen_families(listen: Mapping[str, Any]) -> Iterable[Any]:
    connected = GaugeMetricFamily("qualgent_listen_connected", "1 while this process's LISTEN connection is up.")
    connected.add_metric([], 1.0 if listen["connected"] else 0.0)
    yield connected
    delivered = CounterMetricFamily(
        "qualgent_notifications_delivered", "Notifications this process received on its LISTEN connection."
    )
    delivered.add_metric([], listen["notifications_delivered"])
    yield delivered
    reconnects = CounterMetricFamily("qualgent_listen_reconnects", "Times the LISTEN connection was re-made.")
    reconnects.add_metric([], listen["reconnects"])
    yield reconnects
    waiters = GaugeMetricFamily("qualgent_waiters", "Long-polls and waiting claims parked in this process.")
    waiters.add_metric([], listen["waiters"])
    yield waiters


def exposition(snapshot: Mapping[str, Any] | None, listen: Mapping[str, Any] | None) -> bytes:
    """The Prometheus text for this process: its event metrics, then the queue's state."""
    state = CollectorRegistry(auto_describe=False)
    state.register(StateCollector(snapshot, listen))
    return generate_latest(REGISTRY) + generate_latest(state)


def as_json() -> dict[str, list[dict[str, Any]]]:
    """This process's event metrics as JSON: per label set, a counter's value, a histogram's count and sum."""
    out: dict[str, list[dict[str, Any]]] = {}
    for metric in (JOBS_FINISHED, TEST_DURATION, QUEUE_WAIT, CLAIM_LATENCY, LEASES_RESCUED):
        for family in metric.collect():
            rows: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
            for sample in family.samples:
                suffix = sample.name.removeprefix(family.name)
                if suffix not in ("_total", "_count", "_sum"):
                    continue
                row = rows.setdefault(tuple(sorted(sample.labels.items())), dict(sample.labels))
                row["value" if suffix == "_total" else suffix[1:]] = sample.value
            out[family.name] = list(rows.values())
    return out


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))
