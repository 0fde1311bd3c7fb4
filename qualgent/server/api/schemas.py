"""Request and response bodies. Validation lives in the types: a bad field is a 400 naming it."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.params import Parameter
from msgspec import UNSET, Meta, Struct, UnsetType

from qualgent.domain import AgentStatus, InvalidInput, JobStatus, Outcome, Priority, Target, Tier
from qualgent.domain.text import NAME_RULE
from qualgent.server.db.database import Row
from qualgent.server.queue.claims import Claim, Progress, Result
from qualgent.server.queue.jobs import NewJob

# The wire contract, shared with the client, is defined in qualgent/wire.py (no framework there); the names
# imported "as" themselves are still importable from here.
from qualgent.wire import MAX_BULK as MAX_BULK
from qualgent.wire import PRINTABLE as _PRINTABLE
from qualgent.wire import AgentName, DurationMs, ExitCode, MaxAttempts
from qualgent.wire import IdempotencyKey as IdempotencyKey
from qualgent.wire import Identifier as Identifier
from qualgent.wire import TestPath as TestPath
from qualgent.wire import TokenRole as TokenRole
from qualgent.wire import violation as violation

# Query and path parameters: Litestar enforces and documents only its own Parameter constraints there
# (a msgspec Meta inside them is neither checked nor shown), so the same rule is spelled once more.
_IDENTIFIER_RULES: dict[str, Any] = {
    "min_length": 1,
    "max_length": 128,
    "pattern": _PRINTABLE,
    "description": f"1-128 characters, {NAME_RULE}",
}
IdentifierQuery = Annotated[str | None, Parameter(**_IDENTIFIER_RULES)]
IdentifierPath = Annotated[str, Parameter(**_IDENTIFIER_RULES)]


class JobIn(Struct, forbid_unknown_fields=True):
    org_id: Identifier
    app_version_id: Identifier
    test_path: TestPath
    priority: Priority = Priority.MEDIUM
    target: Target = Target.EMULATOR
    max_attempts: MaxAttempts = 3
    test_retries: Annotated[
        int, Meta(ge=0, le=10, description="also retry a failed test (exit 1) this many times, within max_attempts")
    ] = 0
    timeout_seconds: (
        Annotated[
            int, Meta(ge=1, le=86_400, description="run timeout of each attempt; default: the agent's --test-timeout")
        ]
        | None
    ) = None


JobsIn = Annotated[list[JobIn], Meta(min_length=1, max_length=MAX_BULK)]


class JobResult(Struct):
    exit_code: int | None
    duration_ms: int | None
    output_tail: str | None
    error: str | None
    error_location: str | None = None  # "path:line" of the first error, when the runner told (AppWright runs)


class AttemptOut(Struct):
    number: int
    agent_id: uuid.UUID
    group_id: uuid.UUID
    started_at: dt.datetime
    finished_at: dt.datetime | None
    outcome: str | None
    exit_code: int | None
    duration_ms: int | None
    error: str | None
    error_location: str | None = None


class QueueOut(Struct):
    """Where a pending job stands: the groups its agents take before its own, and when it should start."""

    groups_ahead: int
    eta_seconds: float | None  # null: no online agent serves its target (or the target's cap is 0)
    agents_online: int  # agents online that serve the job's target


class JobOut(Struct):
    id: uuid.UUID
    org_id: str
    app_version_id: str
    test_path: str
    priority: Priority
    target: Target
    status: JobStatus
    attempts: int
    max_attempts: int
    group_id: uuid.UUID
    agent_id: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    run_after: dt.datetime
    result: JobResult | None
    test_retries: int = 0
    timeout_seconds: int | None = None
    flaky: bool = False
    attempt_history: list[AttemptOut] | None = None
    queue: QueueOut | None = None  # pending jobs, where the route knows it


def job_out(row: Mapping[Any, Any]) -> JobOut:
    finished = row["exit_code"] is not None or row["error"] is not None or row["finished_at"] is not None
    result = (
        JobResult(row["exit_code"], row["duration_ms"], row["output_tail"], row["error"], row.get("error_location"))
        if finished
        else None
    )
    history = row.get("attempt_history")
    return JobOut(
        id=row["id"],
        org_id=row["org_id"],
        app_version_id=row["app_version_id"],
        test_path=row["test_path"],
        priority=Priority(_value(row["priority"])),
        target=Target(row["target"]),
        status=JobStatus(row["status"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        group_id=row["group_id"],
        agent_id=row["agent_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        run_after=row["run_after"],
        result=result,
        test_retries=row.get("test_retries", 0),
        timeout_seconds=row.get("timeout_seconds"),
        flaky=row.get("flaky", False),
        attempt_history=None if history is None else [msgspec.convert(a, AttemptOut) for a in history],
    )


def new_job_out(job: NewJob) -> JobOut:
    """A job just submitted, as `job_out` would show its row (a test holds the two equal)."""
    spec = job.spec
    return JobOut(
        id=job.id,
        org_id=spec.org_id,
        app_version_id=spec.app_version_id,
        test_path=spec.test_path,
        priority=spec.priority,
        target=spec.target,
        status=JobStatus.PENDING,
        attempts=0,
        max_attempts=spec.max_attempts,
        group_id=job.group_id,
        agent_id=None,
        created_at=job.now,
        updated_at=job.now,
        started_at=None,
        finished_at=None,
        run_after=job.now,
        result=None,
        test_retries=spec.test_retries,
        timeout_seconds=spec.timeout_seconds,
    )


class WaitIn(Struct, forbid_unknown_fields=True):
    """Wait until any of these jobs has a status other than the one given (null: answer at once)."""

    jobs: Annotated[dict[uuid.UUID, JobStatus | None], Meta(min_length=1, max_length=10_000)]
    timeout: Annotated[float, Meta(ge=0, le=300)] = 30.0


class WaitOut(Struct):
    changed: bool
    jobs: list[JobOut]
    groups_ahead: dict[uuid.UUID, int]
    # Targets that pending jobs among these need and that no online agent serves: they wait for an agent, not
    # for their turn (`qgjob wait` says so; `--fail-if-no-agent` gives up on them).
    no_agent_for: list[Target] = msgspec.field(default_factory=list)


class JobStatusIn(Struct, forbid_unknown_fields=True):
    """`cancelled` cancels the job; `pending` re-queues a finished job. Results come from agents only."""

    status: JobStatus


class AgentIn(Struct, forbid_unknown_fields=True):
    name: AgentName
    targets: Annotated[list[Target], Meta(min_length=1, max_length=3)] = msgspec.field(
        default_factory=lambda: [Target.EMULATOR]
    )


class AgentOut(Struct):
    id: uuid.UUID
    name: str
    targets: list[str]
    status: AgentStatus
    registered_at: dt.datetime
    last_heartbeat_at: dt.datetime
    group_id: uuid.UUID | None
    deregistered_at: dt.datetime | None = None  # set once it said goodbye (listed only when asked for)


def agent_out(row: Any) -> AgentOut:
    """From a row: a queue.agents.Agent (or a mapping of the same fields)."""
    return msgspec.convert(row, AgentOut, strict=False, from_attributes=True)


class AgentStatusIn(Struct, forbid_unknown_fields=True):
    status: AgentStatus


class ClaimRef(Struct, forbid_unknown_fields=True):
    group_id: uuid.UUID
    token: uuid.UUID


class HeartbeatIn(Struct, forbid_unknown_fields=True):
    claims: Annotated[list[ClaimRef], Meta(max_length=100)] = msgspec.field(default_factory=list)


class HeartbeatOut(Struct):
    agent_id: uuid.UUID
    held: list[uuid.UUID]
    lost: list[uuid.UUID]
    cancelled_job_ids: list[uuid.UUID]
    lease_seconds: float


class JobStatusOut(Struct):
    id: uuid.UUID
    status: JobStatus


class HeldBuildIn(Struct, forbid_unknown_fields=True):
    """A build the agent holds installed for a target (the last it installed there)."""

    target: Target
    org_id: Identifier
    app_version_id: Identifier


HeldBuilds = Annotated[
    list[HeldBuildIn],
    Meta(
        max_length=3,
        description="the build the agent holds per target: among groups of equal tier and priority, that build's "
        "group goes first (and needs no install)",
    ),
]


class ClaimIn(Struct, forbid_unknown_fields=True):
    targets: Annotated[list[Target], Meta(max_length=3)] | None = None
    wait: Annotated[float, Meta(ge=0, le=60, description="seconds to wait for work when there is none")] = 0.0
    held_builds: HeldBuilds = []


class ClaimedJob(Struct):
    id: uuid.UUID
    test_path: str
    priority: Priority
    attempts: int
    max_attempts: int
    timeout_seconds: int | None = None


class ClaimOut(Struct):
    group_id: uuid.UUID
    token: uuid.UUID
    org_id: str
    app_version_id: str
    target: Target
    lease_expires_at: dt.datetime
    lease_seconds: float
    jobs: list[ClaimedJob]


class StartIn(Struct, forbid_unknown_fields=True):
    group_id: uuid.UUID
    token: uuid.UUID


class RunIn(Struct, forbid_unknown_fields=True, kw_only=True):
    """How one run ended, as an agent reports it (alone, or in a progress report)."""

    exit_code: ExitCode | None
    duration_ms: DurationMs | None = None
    output_tail: Annotated[str, Meta(max_length=65_536)] | None = None
    error: Annotated[str, Meta(max_length=4096)] | None = None
    outcome: Outcome | None = None
    error_location: Annotated[str, Meta(max_length=1024)] | None = None
    retrying: bool = False  # a failed try the agent's runner retries itself (AppWright): the job stays running
    final: bool = False  # no retry can help (a test file missing, or holding no test): the job ends here

    def __post_init__(self) -> None:
        # A test's output is what it is, NUL bytes included, and must not be lost for them; PostgreSQL
        # text cannot hold NUL, so it is shown as U+FFFD, as undecodable bytes already are.
        self.output_tail = without_nul(self.output_tail)
        self.error = without_nul(self.error)

    def result(self) -> Result:
        return Result(
            self.exit_code,
            self.duration_ms,
            self.output_tail,
            self.error,
            self.outcome,
            without_nul(self.error_location),
            self.retrying,
            self.final,
        )


class ResultIn(RunIn):
    group_id: uuid.UUID
    token: uuid.UUID


MAX_PROGRESS = 1000  # starts or results in one progress report


class StartedIn(Struct, forbid_unknown_fields=True):
    job_id: uuid.UUID
    elapsed_ms: Annotated[int, Meta(ge=0, le=86_400_000, description="how long ago the agent started it")] = 0


class JobResultIn(RunIn):
    job_id: uuid.UUID


class ProgressIn(Struct, forbid_unknown_fields=True):
    """Starts, then results, of a claimed group's jobs, in one transaction (the agent's batched path)."""

    token: uuid.UUID
    started: Annotated[list[StartedIn], Meta(max_length=MAX_PROGRESS)] = []
    results: Annotated[list[JobResultIn], Meta(max_length=MAX_PROGRESS)] = []
    then_claim: Annotated[
        bool,
        Meta(
            description="this is the agent's last report of the group: if it closes the group, claim the agent's next "
            "group at once (no waiting) and answer it as `next`, saving the agent a claim request"
        ),
    ] = False
    held_builds: HeldBuilds = []  # for the claim asked for with then_claim


class JobProgressOut(Struct):
    id: uuid.UUID
    status: JobStatus
    attempts: int


class RefusalOut(Struct):
    job_id: uuid.UUID
    status: JobStatus | None
    detail: str


class ProgressOut(Struct):
    started: list[JobProgressOut]
    reported: list[JobProgressOut]
    refused: list[RefusalOut]
    group_done: bool
    next: ClaimOut | None = None  # asked for with then_claim: the agent's next group, or null (none waiting)


def progress_out(done: Progress, next_claim: ClaimOut | None = None) -> ProgressOut:
    def brief(rows: Sequence[Row]) -> list[JobProgressOut]:
        return [JobProgressOut(r["id"], JobStatus(r["status"]), r["attempts"]) for r in rows]

    refused = [RefusalOut(r.job_id, None if r.status is None else JobStatus(r.status), r.detail) for r in done.refused]
    return ProgressOut(brief(done.started), brief(done.reported), refused, done.group_done, next_claim)


def claim_out(got: Claim, lease_seconds: float) -> ClaimOut:
    jobs = [
        ClaimedJob(j.id, j.test_path, Priority(j.priority), j.attempts, j.max_attempts, j.timeout_seconds)
        for j in got.jobs
    ]
    return ClaimOut(
        got.group_id,
        got.token,
        got.org_id,
        got.app_version_id,
        Target(got.target),
        got.lease_expires_at,
        lease_seconds,
        jobs,
    )


class ReleaseIn(Struct, forbid_unknown_fields=True):
    token: uuid.UUID
    reason: Annotated[str, Meta(max_length=512)] = "released by agent"

    def __post_init__(self) -> None:
        self.reason = without_nul(self.reason) or ""


MaxRunning = (
    Annotated[int, Meta(ge=0, le=1_000_000, description="groups running at once, at most (null: no cap; 0: none)")]
    | None
)


class OrgIn(Struct, forbid_unknown_fields=True):
    """An org's tier, its cap on running groups, or both (a field left out stays as it is)."""

    tier: Tier | UnsetType = UNSET
    max_running: MaxRunning | UnsetType = UNSET


class OrgOut(Struct):
    id: str
    tier: Tier
    created_at: dt.datetime
    updated_at: dt.datetime
    max_running: int | None = None


class TargetIn(Struct, forbid_unknown_fields=True):
    max_running: MaxRunning


class TargetOut(Struct):
    target: Target
    max_running: int | None
    running: int  # groups running now
    pending: int  # groups waiting
    agents_online: int


def org_out(row: Any) -> OrgOut:
    """From a row: a queue.orgs.Org (or a mapping of the same fields)."""
    return msgspec.convert(row, OrgOut, strict=False, from_attributes=True)


class TokenIn(Struct, forbid_unknown_fields=True):
    role: TokenRole
    org_id: Identifier | None = None  # a submitter's org (required for submitters, absent for agents)
    name: Identifier | None = None  # what the token is for, e.g. "ci-android"


class TokenOut(Struct):
    id: uuid.UUID
    role: TokenRole
    org_id: str | None
    name: str | None
    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class NewTokenOut(TokenOut):
    token: str  # the secret: shown once, never stored
    # False when the server has no admin token (QUALGENT_ADMIN_TOKEN): it then checks no token at all, so this
    # one restricts nothing until authentication is turned on (`qgjob token create` says so).
    enforced: bool = True


def token_out(row: Any) -> TokenOut:
    """From a row: a queue.tokens.Token (or a mapping of the same fields)."""
    return msgspec.convert(row, TokenOut, strict=False, from_attributes=True)


class ErrorOut(Struct):
    status_code: int
    detail: str
    error: str
    extra: dict[str, Any] | list[Any] | None = None


def check_bulk(jobs: list[JobIn]) -> None:
    """The bounds of JobsIn, checked by hand: inside the union `JobIn | JobsIn` Litestar keeps neither
    a list's Meta bounds nor shows them in the document, so [] and 10,001 jobs would pass."""
    if not 1 <= len(jobs) <= MAX_BULK:
        raise InvalidInput(f"a list of jobs holds 1 to {MAX_BULK} jobs, not {len(jobs)}", field="body")


_AT = re.compile(r" - at `\$(.*)`$")
_STRICT_DECODERS: dict[int, tuple[Any, msgspec.json.Decoder[Any] | None]] = {}


async def strict_json_body(request: Request[Any, Any, Any]) -> None:
    """Hold a JSON body to its declared types strictly, before Litestar parses it. Litestar converts in
    msgspec's lax mode, made for query strings, which takes "3" for 3 and 3.0 for an integer: a body
    with wrong JSON types must be a 400 naming the field instead. (A before_request hook: one place.)"""
    decoder = _strict_decoder(request.route_handler)
    if decoder is None:
        return
    body = await request.body()
    if not body.strip():
        return
    try:
        value = decoder.decode(body)
    except msgspec.ValidationError as err:
        message, _, _ = str(err).partition(" - at `")
        match = _AT.search(str(err))
        key = match.group(1).removeprefix(".") if match else ""
        raise ValidationException(
            detail=f"Validation failed for {request.method} {request.url.path}",
            extra=[{"message": message, "key": key or "body", "source": "body"}],
        ) from None
    except msgspec.DecodeError:
        return  # not JSON at all: Litestar answers that itself ("JSON is malformed")
    # Litestar would decode the body again, laxly, and convert it to the same type: handing it the value decoded
    # here (as its own cache of the request's JSON) saves that, ~half of the body's cost (msgspec passes an
    # instance of the declared type through). Should a Litestar release keep that cache elsewhere, it just
    # decodes twice again.
    state = getattr(request, "_connection_state", None)
    if state is not None and hasattr(state, "json"):
        state.json = value


def _strict_decoder(handler: Any) -> msgspec.json.Decoder[Any] | None:
    # Keyed by id() but holding the handler too: an id is reused once its object is gone (several apps in one
    # process, as in the tests), and a stale entry would hold a body to another route's type.
    cached = _STRICT_DECODERS.get(id(handler))
    if cached is None or cached[0] is not handler:
        data = handler.parsed_fn_signature.parameters.get("data")
        cached = (handler, None if data is None else msgspec.json.Decoder(data.annotation, strict=True))
        _STRICT_DECODERS[id(handler)] = cached
    return cached[1]


def without_nul(text: str | None) -> str | None:
    return None if text is None else text.replace("\x00", "\ufffd")


def validate(value: Any, kind: Any, field: str) -> Any:
    """Check a path parameter with the same rules as a body field."""
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as err:
        raise InvalidInput(f"invalid {field}: {err}", field=field) from None


def _value(value: Any) -> str:
    return str(getattr(value, "value", value))


class KnownJob(Struct, forbid_unknown_fields=True):
    id: uuid.UUID
    status: JobStatus | None = None  # None: unknown, answer at once


class JobsWaitIn(Struct, forbid_unknown_fields=True):
    """An agent's runner watching the jobs of its run (AppWright): answer when any has another status."""

    jobs: Annotated[list[KnownJob], Meta(min_length=1, max_length=1000)]
    timeout: Annotated[float, Meta(ge=0, le=60)] = 20.0


class AgentJobOut(Struct):
    id: uuid.UUID
    status: JobStatus
    attempts: int
    max_attempts: int
    test_retries: int
    timeout_seconds: int | None


class BrowserstackAppIn(Struct, forbid_unknown_fields=True):
    org_id: Annotated[str, Meta(min_length=1, max_length=200)]
    app_version_id: Annotated[str, Meta(min_length=1, max_length=200)]


class BrowserstackUploadIn(BrowserstackAppIn, forbid_unknown_fields=True, kw_only=True):
    upload_token: uuid.UUID
    app_url: Annotated[str, Meta(pattern="^bs://", max_length=500)]


class BrowserstackGoneIn(BrowserstackAppIn, forbid_unknown_fields=True, kw_only=True):
    app_url: Annotated[str, Meta(max_length=500)]


class BrowserstackAppOut(Struct, omit_defaults=True):
    """The build's app on BrowserStack (app_url), or the right to upload it now (upload_token), or how long to wait
    while another agent uploads it (wait_seconds)."""

    custom_id: str
    app_url: str | None = None
    uploaded_at: dt.datetime | None = None
    upload_token: uuid.UUID | None = None
    wait_seconds: float | None = None
