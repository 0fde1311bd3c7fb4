"""The scheduling benchmark: the real claim SQL, driven by simulated agents over a generated mixed workload, in
simulated time, against the plain tier/priority/age order on the same workload.

    python -m benchmarks.scheduling --database-url postgresql://postgres@127.0.0.1:5432/postgres [--json]

Each policy runs in a scratch database (made beside the one given, migrated, dropped). Submissions, claims and
reports go through qualgent's own code and SQL (qualgent.server.queue.jobs.submit, the claim function, report_progress);
only time is simulated: tests and installs take no real time, and before each step the database's pending groups
and orgs' fair-share clocks are moved back by the simulated time that passed (less the real time the step took), so
`now() - oldest_job_at` is the simulated wait (the aging bound is read against it).

    qualgent       qualgent_claim as it is (aging, held builds, fair share); the agent skips --install for the
                   build its device holds
    plain order    the claim of migration 0009 (tier, best priority, oldest, id), installed beside it for the run;
                   the agent installs every group, as agents did before builds were held

Figures: installs per job (and the number of distinct (build, agent) pairs: the fewest installs could be), makespan
against its lower bound max(the longest single group from its arrival, total work / agents), p95 wait per tier (from
submission to a job's start), and the longest wait of the lowest tier against QUALGENT_AGING_SECONDS."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgspec
import psycopg

from qualgent.domain import Priority, Target
from qualgent.server.bench.run import scratch_database
from qualgent.server.db.database import Database
from qualgent.server.db.engine import libpq_url
from qualgent.server.queue import claims, jobs
from qualgent.server.queue.core import Queue
from qualgent.server.settings import Settings

LEASE_SECONDS = 3600.0  # real seconds: no claim lapses while the simulation runs
AGING_SECONDS = 600.0
TIERS = ("premium", "enterprise", "standard")


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """One submission: a group of tests of one build."""

    at: float  # simulated seconds from the start
    org_id: str
    build: str
    priority: Priority
    tests: tuple[tuple[str, float], ...]  # (path, seconds)


@dataclass(frozen=True, slots=True)
class Workload:
    groups: tuple[GroupPlan, ...]
    tiers: dict[str, str]  # org -> tier
    installs: dict[str, float]  # build -> seconds
    agents: int

    @property
    def jobs(self) -> int:
        return sum(len(g.tests) for g in self.groups)


def generate(seed: int = 19, agents: int = 8, window: float = 3600.0) -> Workload:
    """Six orgs (two per tier), three builds each (a new build replaces the current one now and then, as CI pushes),
    2-6 tests a group of 5-120 s each, installs of 20-40 s; about 1.2x what the agents can run while submissions
    last, so a backlog forms and ranking matters."""
    rng = random.Random(seed)
    orgs = {
        "p1": "premium",
        "p2": "premium",
        "e1": "enterprise",
        "e2": "enterprise",
        "s1": "standard",
        "s2": "standard",
    }
    every = {"premium": 120.0, "enterprise": 200.0, "standard": 300.0}
    priorities = {
        "premium": (Priority.HIGH, Priority.MEDIUM, Priority.MEDIUM),
        "enterprise": (Priority.MEDIUM, Priority.MEDIUM, Priority.LOW),
        "standard": (Priority.LOW, Priority.LOW, Priority.MEDIUM),
    }
    durations = {f"{org}/t{i}.spec.ts": rng.uniform(5, 120) for org in orgs for i in range(12)}
    installs: dict[str, float] = {}
    groups: list[GroupPlan] = []
    for org, tier in orgs.items():
        build = 0
        at = rng.uniform(0, every[tier])
        while at < window:
            if rng.random() < 0.3:
                build += 1
            name = f"{org}-b{build}"
            installs.setdefault(name, rng.uniform(20, 40))
            paths = rng.sample([p for p in durations if p.startswith(org + "/")], rng.randint(2, 6))
            tests = tuple((p, round(durations[p] * rng.uniform(0.9, 1.1), 1)) for p in paths)
            groups.append(GroupPlan(round(at, 1), org, name, rng.choice(priorities[tier]), tests))
            at += rng.expovariate(1 / every[tier])
    groups.sort(key=lambda g: (g.at, g.org_id))
    return Workload(tuple(groups), orgs, installs, agents)


@dataclass(slots=True)
class SimAgent:
    id: uuid.UUID
    free_at: float = 0.0
    held: tuple[str, str] | None = None  # (org, build) installed
    claim: claims.Claim | None = None
    runs: list[tuple[uuid.UUID, float]] = field(default_factory=list)  # (job, seconds) of the claim


@dataclass(slots=True)
class Outcome:
    installs: int = 0
    pairs: set[tuple[str, uuid.UUID]] = field(default_factory=set)
    waits: dict[str, list[float]] = field(default_factory=lambda: {t: [] for t in TIERS})
    makespan: float = 0.0
    claims: int = 0


PLAIN_CLAIM_SQL = "SELECT qualgent_claim_plain(%(agent_id)s, %(targets)s, %(lease_seconds)s)"


def _install_plain_claim(url: str) -> None:
    """The claim of migration 0009, the plain tier/priority/age order, beside today's (same tables)."""
    plain = (Path(__file__).parent / "plain_claim.sql").read_text(encoding="utf-8")
    plain = plain.replace("CREATE FUNCTION qualgent_claim(", "CREATE OR REPLACE FUNCTION qualgent_claim_plain(")
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(plain)


class Simulation:
    def __init__(self, workload: Workload, queue: Queue, plain: bool) -> None:
        self.workload = workload
        self.queue = queue
        self.plain = plain
        self.now = 0.0
        self.outcome = Outcome()
        self.submitted: dict[uuid.UUID, tuple[float, str]] = {}  # job -> (submitted at, tier)
        self.durations: dict[uuid.UUID, float] = {}
        self._real = time.monotonic()

    async def run(self) -> Outcome:
        async with self.queue.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO orgs (id, tier) SELECT * FROM unnest(%(ids)s::text[], %(tiers)s::org_tier[])",
                {"ids": list(self.workload.tiers), "tiers": list(self.workload.tiers.values())},
            )
            rows = await tx.rows(
                "INSERT INTO agents (name, targets) SELECT 'sim-' || i, ARRAY['emulator'] "
                "FROM generate_series(1, %(n)s) i ORDER BY i RETURNING id",
                {"n": self.workload.agents},
            )
            agents = [SimAgent(row["id"]) for row in rows]
        arrivals = list(self.workload.groups)
        while arrivals or any(a.claim for a in agents) or await self._pending():
            busy = [a.free_at for a in agents if a.claim]
            upcoming = [arrivals[0].at] if arrivals else []
            if not busy and not upcoming:
                break  # nothing runs, nothing comes, yet groups wait: none is claimable (cannot happen here)
            await self._advance(min(busy + upcoming))
            while arrivals and arrivals[0].at <= self.now:
                await self._submit(arrivals.pop(0))
            for agent in agents:
                if agent.claim is not None and agent.free_at <= self.now:
                    await self._report(agent)
            for agent in agents:  # in a fixed order, so that runs of one workload agree
                if agent.claim is None:
                    await self._claim(agent)
        self.outcome.makespan = self.now
        return self.outcome

    async def _pending(self) -> bool:
        return bool(await self.queue.db.value("SELECT EXISTS (SELECT FROM job_groups WHERE status = 'pending')"))

    async def _advance(self, to: float) -> None:
        """Simulated time passes: what waits in the database has waited that much longer."""
        delta = to - self.now
        self.now = to
        if delta <= 0:
            return
        # The real time the simulation itself took since the last shift has aged the rows already.
        real = time.monotonic()
        delta, self._real = delta - (real - self._real), real
        async with self.queue.db.transaction() as tx:
            shift = {"secs": delta}
            await tx.execute(
                "UPDATE job_groups SET oldest_job_at = oldest_job_at - make_interval(secs => %(secs)s), "
                "available_at = available_at - make_interval(secs => %(secs)s) WHERE status = 'pending'",
                shift,
            )
            await tx.execute(
                "UPDATE orgs SET last_claimed_at = last_claimed_at - make_interval(secs => %(secs)s) "
                "WHERE last_claimed_at IS NOT NULL",
                shift,
            )

    async def _submit(self, plan: GroupPlan) -> None:
        specs = [jobs.JobSpec(plan.org_id, plan.build, path, plan.priority, Target.EMULATOR) for path, _ in plan.tests]
        made = await jobs.submit(self.queue, specs)
        tier = self.workload.tiers[plan.org_id]
        made_jobs = cast("list[jobs.NewJob]", made.jobs)  # a fresh submission, never a replay
        for job, (_, seconds) in zip(made_jobs, plan.tests, strict=True):
            job_id = job.id
            self.submitted[job_id] = (self.now, tier)
            self.durations[job_id] = seconds

    async def _claim(self, agent: SimAgent) -> None:
        if self.plain:
            params = {"agent_id": agent.id, "targets": ["emulator"], "lease_seconds": LEASE_SECONDS}
            got = await self.queue.db.value(PLAIN_CLAIM_SQL, params)
            group = got.get("group")
            claim = None if group is None else _claim_of(group, got["jobs"])
        else:
            held = () if agent.held is None else (claims.HeldBuild("emulator", *agent.held),)
            claim = await claims.claim(self.queue, agent.id, ["emulator"], held)
        if claim is None:
            return
        self.outcome.claims += 1
        build = (claim.org_id, claim.app_version_id)
        start = self.now
        if self.plain or agent.held != build:
            self.outcome.installs += 1
            start += self.workload.installs[claim.app_version_id]
        self.outcome.pairs.add((claim.app_version_id, agent.id))
        agent.held = build
        agent.claim = claim
        agent.runs = []
        for job in claim.jobs:
            submitted, tier = self.submitted[job.id]
            self.outcome.waits[tier].append(start - submitted)
            agent.runs.append((job.id, self.durations[job.id]))
            start += self.durations[job.id]
        agent.free_at = start

    async def _report(self, agent: SimAgent) -> None:
        assert agent.claim is not None
        claim, agent.claim = agent.claim, None
        starts = [claims.Started(job_id) for job_id, _ in agent.runs]
        results = [(job_id, claims.Result(exit_code=0, duration_ms=int(s * 1000))) for job_id, s in agent.runs]
        await claims.report_progress(self.queue, agent.id, claim.group_id, claim.token, starts, results)


def _claim_of(group: dict[str, Any], claimed: list[dict[str, Any]]) -> claims.Claim:
    return claims.Claim(
        group_id=uuid.UUID(group["id"]),
        token=uuid.UUID(group["token"]),
        org_id=group["org_id"],
        app_version_id=group["app_version_id"],
        target=group["target"],
        lease_expires_at=group["lease_expires_at"],
        jobs=msgspec.convert(claimed, list[claims.ClaimedJob]),
    )


def lower_bound(workload: Workload) -> float:
    """No schedule ends before the longest group ends when it runs at once on arrival, nor before all work (each
    build installed once) is shared evenly by the agents."""
    longest = max(g.at + workload.installs[g.build] + sum(s for _, s in g.tests) for g in workload.groups)
    work = sum(s for g in workload.groups for _, s in g.tests) + sum(workload.installs.values())
    return max(longest, work / workload.agents)


def _p95(values: Sequence[float]) -> float | None:
    if not values:
        return None
    return statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]


def figures(workload: Workload, outcome: Outcome) -> dict[str, Any]:
    bound = lower_bound(workload)
    return {
        "jobs": workload.jobs,
        "groups_claimed": outcome.claims,
        "installs": outcome.installs,
        "installs_per_job": round(outcome.installs / workload.jobs, 3),
        "distinct_build_agent_pairs": len(outcome.pairs),
        "makespan_s": round(outcome.makespan),
        "makespan_lower_bound_s": round(bound),
        "makespan_vs_bound": round(outcome.makespan / bound, 3),
        "p95_wait_s": {tier: _round(_p95(waits)) for tier, waits in outcome.waits.items()},
        "longest_wait_s": {tier: _round(max(waits, default=None)) for tier, waits in outcome.waits.items()},
        "aging_bound_s": AGING_SECONDS,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value)


async def simulate(url: str, workload: Workload, plain: bool) -> dict[str, Any]:
    settings = Settings(database_url=url, lease_seconds=LEASE_SECONDS, aging_seconds=AGING_SECONDS)
    async with Database(url, size=2, application_name="qgjob bench scheduling") as db:
        outcome = await Simulation(workload, Queue(db, settings), plain).run()
    return figures(workload, outcome)


def measure(database_url: str, seed: int = 19, agents: int = 8, window: float = 3600.0) -> dict[str, Any]:
    """Both policies over the same workload, each in a scratch database of its own."""
    workload = generate(seed, agents, window)
    result: dict[str, Any] = {"agents": agents, "seed": seed, "window_s": window}
    for name, plain in (("plain_order", True), ("qualgent", False)):
        with scratch_database(database_url) as url:
            if plain:
                _install_plain_claim(url)
            result[name] = asyncio.run(simulate(url, workload, plain))
    return result


def _table(result: dict[str, Any]) -> str:
    plain, ours = result["plain_order"], result["qualgent"]
    rows = [
        ("jobs / groups", f"{ours['jobs']} / {ours['groups_claimed']}", f"{plain['jobs']} / {plain['groups_claimed']}"),
        ("installs per job", str(ours["installs_per_job"]), str(plain["installs_per_job"])),
        ("installs (distinct build, agent pairs)", f"{ours['installs']} ({ours['distinct_build_agent_pairs']})",
         f"{plain['installs']} ({plain['distinct_build_agent_pairs']})"),
        ("makespan, s (x lower bound)", f"{ours['makespan_s']} ({ours['makespan_vs_bound']}x)",
         f"{plain['makespan_s']} ({plain['makespan_vs_bound']}x)"),
    ]  # fmt: skip
    for tier in TIERS:
        rows.append((f"p95 wait {tier}, s", str(ours["p95_wait_s"][tier]), str(plain["p95_wait_s"][tier])))
    rows.append(
        (
            f"longest wait standard, s (bound {AGING_SECONDS:.0f})",
            str(ours["longest_wait_s"]["standard"]),
            str(plain["longest_wait_s"]["standard"]),
        )
    )
    width = max(len(r[0]) for r in rows)
    lines = [f"{'':<{width}}  {'qualgent':>14}  {'plain order':>14}"]
    lines += [f"{name:<{width}}  {a:>14}  {b:>14}" for name, a, b in rows]
    lines.append(f"lower bound of the makespan: {ours['makespan_lower_bound_s']} s ({result['agents']} agents)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scheduling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server to make scratch databases on")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--window", type=float, default=3600.0, help="simulated seconds submissions go on for")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    result = measure(args.database_url, args.seed, args.agents, args.window)
    print(json.dumps(result, indent=2) if args.json else _table(result))


if __name__ == "__main__":
    main()
