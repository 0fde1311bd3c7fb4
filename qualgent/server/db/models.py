"""The schema, as SQLAlchemy models. Alembic migrations are the only way it is made;
tests/integration/test_schema.py checks that the migrations produce exactly this.

Hot-path design (docs/design.md explains it):
- job_groups is the small table the claim scans: one row per (org, app version, target) waiting,
  with the scheduling keys (tier, best priority, oldest job) kept on the row, and a partial index
  on exactly the claimable rows in claim order.
- jobs holds every job for good; finished jobs never enter the claim's index.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from qualgent.domain.types import AgentStatus, GroupStatus, JobStatus, Outcome, Priority, Target, Tier

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _values(enum: type[Any]) -> str:
    return ", ".join(f"'{member.value}'" for member in enum)


def _in(column: str, enum: type[Any]) -> str:
    return f"{column} IN ({_values(enum)})"


# Native enums where order means something: SQL sorts and min()s them in declaration order.
PRIORITY = Enum(Priority, name="job_priority", values_callable=lambda e: [m.value for m in e])
TIER = Enum(Tier, name="org_tier", values_callable=lambda e: [m.value for m in e])

# Storage parameters of the hot tables (docs/storage.md "Table hygiene" has the figures).
# A fill factor below 100 leaves room on each page for the next version of a row, so an update that changes
# no indexed column stays on its page (a HOT update: no index entry written, cleaned up without VACUUM).
# Vacuum and analyze at 2% of changed rows instead of 20%: the hot tables hold history, so 20% of them is a
# lot of dead rows for the claim's indexes to step over, and a stale pending count for the planner.
_AUTOVACUUM = {"autovacuum_vacuum_scale_factor": 0.02, "autovacuum_analyze_scale_factor": 0.02}
# Mostly inserted: vacuum after 5% new rows too, to keep the visibility map (index-only scans) current.
_AUTOVACUUM_INSERTS = {**_AUTOVACUUM, "autovacuum_vacuum_insert_scale_factor": 0.05}
# job_groups: every heartbeat moves a running group's lease; no index covers lease_expires_at, so it is HOT.
GROUPS_STORAGE = {"postgresql_with": {"fillfactor": 70, **_AUTOVACUUM}}
# jobs: every status change touches an index (status is indexed), so a lower fill factor buys nothing.
JOBS_STORAGE = {"postgresql_with": _AUTOVACUUM_INSERTS}
# attempts: inserted, then finished once (outcome and finished_at are indexed for reporting: not HOT).
ATTEMPTS_STORAGE = {"postgresql_with": _AUTOVACUUM_INSERTS}
# agents: a small table whose every row is rewritten at each heartbeat, by HOT updates (no index but the key).
AGENTS_STORAGE = {"postgresql_with": {"fillfactor": 50}}


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Org(Base):
    __tablename__ = "orgs"
    __table_args__ = (CheckConstraint("max_running >= 0", name="max_running"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    tier: Mapped[Tier] = mapped_column(TIER, nullable=False, server_default=Tier.STANDARD.value)
    created_at: Mapped[dt.datetime] = _now()
    updated_at: Mapped[dt.datetime] = _now()
    # At most this many of the org's groups run at once (NULL: no cap); the claim counts under a lock (0015).
    max_running: Mapped[int | None] = mapped_column(Integer)
    # When a group of the org was last claimed: fair share among orgs of one tier.
    last_claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class TargetCap(Base):
    """A cap on the groups running at once on a target (a device farm's sessions); no row: no cap."""

    __tablename__ = "targets"
    __table_args__ = (
        CheckConstraint(_in("target", Target), name="target"),
        CheckConstraint("max_running >= 0", name="max_running"),
    )

    target: Mapped[str] = mapped_column(Text, primary_key=True)
    max_running: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = _now()


class DurationHistory(Base):
    """How long a test runs (a moving mean over its recent runs) and when it last failed: estimates and ETAs."""

    __tablename__ = "test_durations"

    org_id: Mapped[str] = mapped_column(Text, primary_key=True)
    target: Mapped[str] = mapped_column(Text, primary_key=True)
    test_path: Mapped[str] = mapped_column(Text, primary_key=True)
    runs: Mapped[int] = mapped_column(Integer, nullable=False)
    mean_ms: Mapped[float] = mapped_column(Float, nullable=False)
    last_failed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = _now()


class BuildInstall(Base):
    """How long a build took to install (claim to first start of its first group)."""

    __tablename__ = "build_installs"

    org_id: Mapped[str] = mapped_column(Text, primary_key=True)
    app_version_id: Mapped[str] = mapped_column(Text, primary_key=True)
    target: Mapped[str] = mapped_column(Text, primary_key=True)
    install_ms: Mapped[float] = mapped_column(Float, nullable=False)
    recorded_at: Mapped[dt.datetime] = _now()


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (CheckConstraint(_in("status", AgentStatus), name="status"), AGENTS_STORAGE)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=func.gen_random_uuid())
    name: Mapped[str] = mapped_column(Text, nullable=False)
    targets: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=AgentStatus.IDLE.value)
    registered_at: Mapped[dt.datetime] = _now()
    last_heartbeat_at: Mapped[dt.datetime] = _now()
    # Set when the agent deregisters: it then leaves the live views (kept for the attempts that name it).
    deregistered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class JobGroup(Base):
    __tablename__ = "job_groups"
    __table_args__ = (
        CheckConstraint(_in("status", GroupStatus), name="status"),
        CheckConstraint(_in("target", Target), name="target"),
        # At most one pending group per key: new jobs of the key join it.
        Index(
            "uq_job_groups_pending_key",
            "org_id",
            "app_version_id",
            "target",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        # The claim reads this index in order and stops at the first unlocked row.
        Index(
            "ix_job_groups_claimable",
            "tier",
            "best_priority",
            "oldest_job_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        # Running groups by agent: rescue reads them all (one per busy agent) and filters on the lease, and
        # heartbeats find an agent's groups. lease_expires_at is in no index, so extending a lease is HOT.
        Index("ix_job_groups_running", "agent_id", postgresql_where=text("status = 'running'")),
        # Running groups per target and per org: what a capacity cap counts (0015).
        Index("ix_job_groups_running_target", "target", postgresql_where=text("status = 'running'")),
        Index("ix_job_groups_running_org", "org_id", postgresql_where=text("status = 'running'")),
        # Pending groups by age: the claim finds those past the aging bound here, oldest first.
        Index("ix_job_groups_aging", "oldest_job_at", "id", postgresql_where=text("status = 'pending'")),
        # Retention: done groups by age.
        Index("ix_job_groups_finished_at", "finished_at", postgresql_where=text("status = 'done'")),
        GROUPS_STORAGE,
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=func.gen_random_uuid())
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), nullable=False)
    app_version_id: Mapped[str] = mapped_column(Text, nullable=False)
    target: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=GroupStatus.PENDING.value)
    tier: Mapped[Tier] = mapped_column(TIER, nullable=False)
    best_priority: Mapped[Priority] = mapped_column(PRIORITY, nullable=False)
    oldest_job_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    available_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    job_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id"))
    lease_token: Mapped[uuid.UUID | None] = mapped_column(UUID)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = _now()


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JobStatus), name="status"),
        CheckConstraint(_in("target", Target), name="target"),
        CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts"),
        CheckConstraint(
            "test_retries >= 0 AND attempt_budget >= 1 AND (timeout_seconds IS NULL OR timeout_seconds > 0)",
            name="retry_settings",
        ),
        # The jobs a claimed group hands out, in run order; finished jobs drop out of it.
        Index(
            "ix_jobs_active_by_group",
            "group_id",
            "priority",
            "created_at",
            postgresql_where=text("status IN ('pending', 'running')"),
        ),
        # Every job of a group, finished ones too: the foreign key's check when a group is deleted (retention)
        # and a running group's cancelled jobs (heartbeats).
        Index("ix_jobs_group_id", "group_id"),
        Index("ix_jobs_org_id_created_at", "org_id", "created_at"),
        # Running, failed and cancelled jobs by status, newest first (stats, listings). Partial: completed and
        # pending jobs, the many, never enter it, and no query for pending jobs can walk it.
        Index(
            "ix_jobs_running_failed_cancelled",
            "status",
            "created_at",
            postgresql_where=text("status IN ('running', 'failed', 'cancelled')"),
        ),
        # Reporting: time windows and recent results read finished jobs by finish time.
        Index(
            "ix_jobs_finished_at",
            "finished_at",
            postgresql_where=text("status IN ('completed', 'failed', 'cancelled')"),
        ),
        JOBS_STORAGE,
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=func.gen_random_uuid())
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), nullable=False)
    app_version_id: Mapped[str] = mapped_column(Text, nullable=False)
    target: Mapped[str] = mapped_column(Text, nullable=False)
    test_path: Mapped[str] = mapped_column(Text, nullable=False)
    priority: Mapped[Priority] = mapped_column(PRIORITY, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=JobStatus.PENDING.value)
    group_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("job_groups.id"), nullable=False)
    agent_id: Mapped[uuid.UUID | None] = mapped_column(UUID)  # no foreign key: see Attempt
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="3")
    # What the submission asked for, kept so a re-run grants the same budget anew.
    attempt_budget: Mapped[int] = mapped_column(Integer, nullable=False, server_default="3")
    # Test failures (exit 1) retried as well, up to this many times (within max_attempts); 0: final.
    test_retries: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    timeout_seconds: Mapped[int | None] = mapped_column(Integer)  # overrides the agent's --test-timeout
    flaky: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())  # failed, then passed
    run_after: Mapped[dt.datetime] = _now()
    exit_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    output_tail: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    error_location: Mapped[str | None] = mapped_column(Text)  # "path:line" of the first error (AppWright runs)
    created_at: Mapped[dt.datetime] = _now()
    updated_at: Mapped[dt.datetime] = _now()
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (
        CheckConstraint(f"outcome IS NULL OR {_in('outcome', Outcome)}", name="outcome"),
        # Reporting: test runs by finish time (flaky tests), a group's attempts (installs).
        Index("ix_attempts_finished_at", "finished_at", postgresql_where=text("outcome IN ('passed', 'test_failed')")),
        Index("ix_attempts_group_id", "group_id"),
        ATTEMPTS_STORAGE,
    )

    # No foreign keys on the hot tables' per-run writes: the statements that write an attempt
    # take its job and agent from rows they have locked, and retention deletes a job's attempts before the job.
    job_id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[uuid.UUID] = mapped_column(UUID, nullable=False)
    group_id: Mapped[uuid.UUID] = mapped_column(UUID, nullable=False)
    started_at: Mapped[dt.datetime] = _now()
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    error_location: Mapped[str | None] = mapped_column(Text)


class BrowserstackApp(Base):
    """A build uploaded to BrowserStack App Automate, shared by every agent (migration 0013): its bs:// id,
    when it was uploaded (BrowserStack deletes it 30 days later), and who is uploading it now (a lease)."""

    __tablename__ = "browserstack_apps"

    org_id: Mapped[str] = mapped_column(Text, primary_key=True)
    app_version_id: Mapped[str] = mapped_column(Text, primary_key=True)
    custom_id: Mapped[str] = mapped_column(Text, nullable=False)
    app_url: Mapped[str | None] = mapped_column(Text)
    uploaded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    upload_token: Mapped[uuid.UUID | None] = mapped_column(UUID)
    upload_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = _now()


class ApiToken(Base):
    """A credential for the HTTP API (not to be confused with a claim's lease token). Only the SHA-256
    of the secret is kept; the secret itself is shown once, when the token is made."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("role IN ('submitter', 'agent')", name="role"),
        # A submitter acts for exactly one org; an agent token serves every org's work.
        CheckConstraint("(role = 'submitter') = (org_id IS NOT NULL)", name="org_for_submitters"),
        UniqueConstraint("token_hash"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=func.gen_random_uuid())
    role: Mapped[str] = mapped_column(Text, nullable=False)
    org_id: Mapped[str | None] = mapped_column(ForeignKey("orgs.id"))
    name: Mapped[str | None] = mapped_column(Text)
    prefix: Mapped[str] = mapped_column(Text, nullable=False)
    token_hash: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[dt.datetime] = _now()
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Submission(Base):
    """An idempotency key and what its first submission made: the same submission sent again (a retried
    CI step) gets the same jobs back instead of queueing the tests twice."""

    __tablename__ = "submissions"
    __table_args__ = (Index("ix_submissions_created_at", "created_at"),)

    idempotency_key: Mapped[str] = mapped_column(Text, primary_key=True)
    request_hash: Mapped[str] = mapped_column(Text, nullable=False)
    job_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(UUID), nullable=False)
    created_at: Mapped[dt.datetime] = _now()
