from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from litestar import Controller, get
from litestar.params import FromPath, QueryParameter

from qualgent.domain import InvalidInput
from qualgent.server.api.deps import ServicesDep
from qualgent.server.api.schemas import IdentifierQuery
from qualgent.server.reporting import ReportFilter, ReportName, run_report


class ReportController(Controller):
    path = "/reports"
    tags = ["reports"]

    @get(
        "/{name:str}",
        summary="A reporting view for one org (or all) and a time window: org-success-rates, flaky-tests, "
        "app-versions, or recent-results (the latest finished jobs)",
    )
    async def report(
        self,
        services: ServicesDep,
        name: FromPath[ReportName],
        org_id: IdentifierQuery = None,
        since: Annotated[dt.datetime | None, QueryParameter(description="from this time (ISO 8601)")] = None,
        until: Annotated[dt.datetime | None, QueryParameter(description="up to this time, excluded")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 100,
    ) -> dict[str, Any]:
        since, until = _aware(since), _aware(until)
        if since is not None and until is not None and since >= until:
            raise InvalidInput("since must be before until", field="since")
        rows = await run_report(services.db, name, ReportFilter(org_id, since, until, limit))
        return {"report": name.value, "org_id": org_id, "since": since, "until": until, "rows": rows}


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    """A time without a zone is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=dt.UTC)
