"""One typed settings object, built once at start-up from the environment and passed down."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import platformdirs

from qualgent.domain import InvalidInput

ENV_PREFIX = "QUALGENT_"


def default_data_dir() -> Path:
    """Where the embedded PostgreSQL keeps its files when QUALGENT_DATA_DIR is unset.

    As root, the embedded server runs as a separate OS user that must be able to traverse every parent
    of its data directory; /var/lib is traversable already, whereas /root is not, and we will not open
    /root up. Other users get their usual per-user data dir (the server runs as them, nothing changes).
    """
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/qualgent")
    return Path(platformdirs.user_data_dir("qualgent"))


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    admin_token: str | None = None
    lease_seconds: float = 30.0
    host: str = "127.0.0.1"
    port: int = 3000
    migrate: bool = False
    log_level: str = "info"
    log_format: str = "text"  # or "json": one JSON object per line (qualgent.logs)
    # Requests per second a client may sustain, and the burst it may send at once (docs/security.md).
    # Counted per server process; 0 turns rate limiting off.
    rate_limit: float = 50.0
    rate_burst: int = 200
    insecure: bool = False  # serve a non-loopback address without an admin token (only by the --insecure flag)
    # Finished jobs, their attempts, done groups and idempotency keys older than this are folded into the
    # reporting rollups and deleted (qualgent/server/queue/retention.py; every server prunes hourly). 0: keep forever.
    retention_days: float = 90.0
    # An unknown org id on submit creates the org (standard tier); false refuses it (400 naming it), so a typo
    # such as `ACME` for `acme` cannot quietly start a new org.
    auto_create_orgs: bool = True
    # A group waiting this long outranks every group that waited less, whatever their tier and priority
    # (bounded starvation; docs/design.md, "3. The claim").
    aging_seconds: float = 600.0
    # A pending group is split for idle agents into chunks of at least this much expected work (history).
    min_chunk_seconds: float = 120.0
    # Connections (qualgent/server/api/connections.py): a request head not in within this many seconds is cut (408), and
    # one client address may hold this many connections at once (0: no bound; see deploy/README.md behind a proxy).
    header_timeout_seconds: float = 10.0
    max_connections_per_address: int = 4096
    # Event streams (GET /api/events) one token may hold open at once, per server (without a token: per address).
    max_streams_per_token: int = 100

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name)
            return value if value else None

        settings = cls()
        updates: dict[str, object] = {}
        if (url := get("DATABASE_URL")) is not None:
            updates["database_url"] = url
        if (data_dir := get("DATA_DIR")) is not None:
            updates["data_dir"] = Path(data_dir).expanduser()
        if (token := get("ADMIN_TOKEN")) is not None:
            updates["admin_token"] = token
        if (lease := get("LEASE_SECONDS")) is not None:
            updates["lease_seconds"] = _positive_float("QUALGENT_LEASE_SECONDS", lease)
        if (host := get("HOST")) is not None:
            updates["host"] = host
        if (port := get("PORT")) is not None:
            updates["port"] = int(_positive_float("QUALGENT_PORT", port))
        updates.update(_logging(get))
        updates.update(_rate_limits(get))
        updates.update(_connections(get))
        if (days := get("RETENTION_DAYS")) is not None:
            updates["retention_days"] = _non_negative_float("QUALGENT_RETENTION_DAYS", days)
        if (auto := get("AUTO_CREATE_ORGS")) is not None:
            updates["auto_create_orgs"] = _boolean("QUALGENT_AUTO_CREATE_ORGS", auto)
        updates.update(_scheduling(get))
        return replace(settings, **updates)  # type: ignore[arg-type]

    def with_overrides(self, **overrides: object) -> Settings:
        """Flags override the environment; None means 'not given'."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


def _logging(get: Callable[[str], str | None]) -> dict[str, object]:
    updates: dict[str, object] = {}
    if (level := get("LOG_LEVEL")) is not None:
        updates["log_level"] = level.lower()
    if (log_format := get("LOG_FORMAT")) is not None:
        if log_format.lower() not in ("text", "json"):
            raise InvalidInput(f"QUALGENT_LOG_FORMAT must be text or json, got {log_format!r}")
        updates["log_format"] = log_format.lower()
    return updates


def _boolean(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"{name} must be true or false, got {raw!r}")


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise InvalidInput(f"{name} must be positive, got {raw!r}")
    return value


def _non_negative_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a number, got {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise InvalidInput(f"{name} must be 0 (keep forever) or a positive number of days, got {raw!r}")
    return value


def _scheduling(get: Callable[[str], str | None]) -> dict[str, object]:
    updates: dict[str, object] = {}
    if (aging := get("AGING_SECONDS")) is not None:
        updates["aging_seconds"] = _positive_float("QUALGENT_AGING_SECONDS", aging)
    if (chunk := get("MIN_CHUNK_SECONDS")) is not None:
        updates["min_chunk_seconds"] = _positive_float("QUALGENT_MIN_CHUNK_SECONDS", chunk)
    return updates


def _rate_limits(get: Callable[[str], str | None]) -> dict[str, object]:
    updates: dict[str, object] = {}
    if (rate := get("RATE_LIMIT")) is not None:
        updates["rate_limit"] = 0.0 if rate.strip() == "0" else _positive_float("QUALGENT_RATE_LIMIT", rate)
    if (burst := get("RATE_BURST")) is not None:
        updates["rate_burst"] = int(_positive_float("QUALGENT_RATE_BURST", burst))
    return updates


def _connections(get: Callable[[str], str | None]) -> dict[str, object]:
    updates: dict[str, object] = {}
    if (timeout := get("HEADER_TIMEOUT_SECONDS")) is not None:
        updates["header_timeout_seconds"] = _positive_float("QUALGENT_HEADER_TIMEOUT_SECONDS", timeout)
    if (bound := get("MAX_CONNECTIONS_PER_ADDRESS")) is not None:
        value = _non_negative_float("QUALGENT_MAX_CONNECTIONS_PER_ADDRESS", bound)
        if value != int(value):
            raise InvalidInput(f"QUALGENT_MAX_CONNECTIONS_PER_ADDRESS must be a whole number, got {bound!r}")
        updates["max_connections_per_address"] = int(value)
    if (streams := get("MAX_STREAMS_PER_TOKEN")) is not None:
        value = _positive_float("QUALGENT_MAX_STREAMS_PER_TOKEN", streams)
        if value != int(value):
            raise InvalidInput(f"QUALGENT_MAX_STREAMS_PER_TOKEN must be a whole number, got {streams!r}")
        updates["max_streams_per_token"] = int(value)
    return updates
