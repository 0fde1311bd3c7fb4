"""The dashboard's pages and forms. Each page is rendered on the server from the queue's own reads; the
browser script (static/dashboard.js) re-fetches the live part of a page when the event stream says a job
changed. Every form posts here, is checked for CSRF and redirects back (post/redirect/get)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from urllib.parse import quote, urlencode

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath
from litestar.response import Redirect

from qualgent.domain import FINAL_STATUSES, InvalidInput, JobStatus, NotFound, Target, Tier
from qualgent.domain.roles import Role
from qualgent.server.api import sessions
from qualgent.server.api.auth import Principal
from qualgent.server.api.deps import Services, ServicesDep
from qualgent.server.queue import agents, capacity, history, jobs, orgs, overview, selection, tokens
from qualgent.server.queue.selection import Selection
from qualgent.server.reporting import queries as reporting
from qualgent.server.web import access, charts
from qualgent.server.web.render import page

PAGE_SIZE = 50
_FILTERS = ("org_id", "app_version_id", "group_id", "target", "status", "q")


def _context(request: Request[Any, Any, Any], principal: Principal | None, **values: Any) -> tuple[dict[str, Any], Any]:
    token, new_cookie = access.csrf_token(request)
    base = {
        "principal": principal,
        "is_admin": principal is not None and principal.role is Role.ADMIN,
        "auth_on": request.app.state.services.settings.admin_token is not None,
        "csrf": token,
        "path": request.url.path,
        "live": None,
    }
    return {**base, **values}, new_cookie


def render_page(
    request: Request[Any, Any, Any], template: str, principal: Principal | None, status_code: int = 200, **values: Any
) -> Response[str]:
    context, new_cookie = _context(request, principal, **values)
    response = page(template, context, status_code)
    if new_cookie is not None:
        response.cookies.append(new_cookie)
    return response


def _viewer(request: Request[Any, Any, Any], services: Services) -> Principal | Redirect:
    access.check_host(request, services)
    principal = access.principal_of(request)
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(f"/login?{urlencode({'next': target})}")
    return principal


def _local(next_path: str | None) -> str:
    """Only a path on this server may be a redirect's target (no open redirect)."""
    if not next_path or not next_path.startswith("/") or next_path.startswith(("//", "/\\")):
        return "/"
    return next_path


def _back(fields: dict[str, str], default: str) -> Redirect:
    return Redirect(_local(fields.get("next") or default), status_code=303)


class DashboardController(Controller):
    path = "/"
    include_in_schema = False

    @get("/", name="overview")
    async def overview(self, request: Request[Any, Any, Any], services: ServicesDep) -> Response[Any]:
        viewer = _viewer(request, services)
        if isinstance(viewer, Redirect):
            return viewer
        org = viewer.org_filter(None)
        state = await overview.queue(services.db, org)
        agent_rows = await agents.list_agents(services.queue, limit=100) if viewer.role is Role.ADMIN else []
        caps = await capacity.list_targets(services.queue) if viewer.role is Role.ADMIN else []
        by_status: dict[str, int] = {}
        for agent in agent_rows:
            by_status[agent.status] = by_status.get(agent.status, 0) + 1
        return render_page(
            request,
            "overview.html",
            viewer,
            state=state,
            agents=agent_rows,
            agents_by_status=by_status,
            targets=caps,
            tiers=[t.value for t in Tier],
            live={"org_id": org} if org else {},
        )

    @get("/login", name="login")
    async def login_form(self, request: Request[Any, Any, Any], services: ServicesDep) -> Response[Any]:
        next_path = _local(request.query_params.get("next"))
        if services.settings.admin_token is None:
            return Redirect(next_path)
        return render_page(request, "login.html", None, next=next_path, error=None)

    @post("/login", status_code=303)
    async def login(self, request: Request[Any, Any, Any], services: ServicesDep) -> Response[Any]:
        fields = await access.check_form(request)
        admin_token = services.settings.admin_token
        if admin_token is None:
            return Redirect(_local(fields.get("next")), status_code=303)
        secret = fields.get("token", "").strip()
        subject: str | None = None
        error = "Unknown or revoked token."
        if secret and tokens.same_secret(secret, admin_token):
            subject = sessions.ADMIN
        elif secret:
            found = await services.tokens.find(services.db, secret)
            if found is not None and found.role == Role.AGENT.value:
                error = "An agent token cannot open the dashboard: use a submitter or the admin token."
            elif found is not None:
                subject = tokens.digest(secret)
        if subject is None:
            return render_page(request, "login.html", None, 401, next=_local(fields.get("next")), error=error)
        response = Redirect(_local(fields.get("next")), status_code=303)
        value = sessions.seal(admin_token, subject)
        response.cookies.append(access.cookie(request, sessions.COOKIE, value, sessions.SESSION_SECONDS))
        return response

    @post("/logout", status_code=303)
    async def logout(self, request: Request[Any, Any, Any]) -> Response[Any]:
        await access.check_form(request)
        response = Redirect("/login", status_code=303)
        response.cookies.append(access.cookie(request, sessions.COOKIE, "", max_age=0))
        return response

    @get("/jobs", name="jobs")
    async def job_list(self, request: Request[Any, Any, Any], services: ServicesDep) -> Response[Any]:
        viewer = _viewer(request, services)
        if isinstance(viewer, Redirect):
            return viewer
        params = {key: (request.query_params.get(key) or "").strip() for key in _FILTERS}
        chosen = _selection(params, viewer)
        before = _uuid(request.query_params.get("before"), "before")
        rows = await selection.list_jobs(services.db, chosen, before, PAGE_SIZE + 1)
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        query = {k: v for k, v in params.items() if v}
        older = urlencode({**query, "before": str(rows[-1]["id"])}) if more and rows else None
        return render_page(
            request,
            "jobs.html",
            viewer,
            jobs=rows,
            filters=params,
            statuses=[s.value for s in JobStatus],
            targets=[t.value for t in Target],
            older=older,
            done=_done(request.query_params.get("done")),
            can_bulk=chosen.narrowed and (viewer.role is Role.ADMIN or bool(query)),
            live={"org_id": viewer.org_filter(None)} if viewer.role is Role.SUBMITTER else {},
        )

    @post("/jobs/cancel", status_code=303)
    async def bulk_cancel(self, request: Request[Any, Any, Any], services: ServicesDep) -> Response[Any]:
        viewer, fields = await _acting(request, services)
        done = await selection.cancel(services.db, _selection(fields, viewer))
        return _back({"next": f"/jobs?{_query(fields)}&done=cancelled-{len(done.job_ids)}"}, "/jobs")

    @post("/jobs/retry", status_code=303)
    async def bulk_retry(self, request: Request[Any, Any, Any], services: ServicesDep) -> Response[Any]:
        viewer, fields = await _acting(request, services)
        done = await selection.retry(services.db, _selection(fields, viewer))
        return _back({"next": f"/jobs?{_query(fields)}&done=retried-{len(done.job_ids)}"}, "/jobs")

    @get("/jobs/{job_id:uuid}", name="job")
    async def job(self, request: Request[Any, Any, Any], services: ServicesDep, job_id: FromPath[uuid.UUID]) -> Any:
        viewer = _viewer(request, services)
        if isinstance(viewer, Redirect):
            return viewer
        row = await _visible_job(services, viewer, job_id)
        queue = None
        if row["status"] == JobStatus.PENDING.value:
            found = await history.estimates(services.queue, [row["group_id"]])
            queue = found.get(row["group_id"])
        return render_page(
            request,
            "job.html",
            viewer,
            job=row,
            queue=queue,
            final=row["status"] in {s.value for s in FINAL_STATUSES},
            may_act=access.may_act(viewer, row["org_id"]),
            live={"job_id": str(job_id)},
        )

    @post("/jobs/{job_id:uuid}/cancel", status_code=303)
    async def cancel(self, request: Request[Any, Any, Any], services: ServicesDep, job_id: FromPath[uuid.UUID]) -> Any:
        viewer, _ = await _acting(request, services)
        await _visible_job(services, viewer, job_id, acting=True)
        await jobs.cancel(services.queue, job_id)
        return Redirect(f"/jobs/{job_id}", status_code=303)

    @post("/jobs/{job_id:uuid}/retry", status_code=303)
    async def retry(self, request: Request[Any, Any, Any], services: ServicesDep, job_id: FromPath[uuid.UUID]) -> Any:
        viewer, _ = await _acting(request, services)
        await _visible_job(services, viewer, job_id, acting=True)
        await jobs.rerun(services.queue, job_id)
        return Redirect(f"/jobs/{job_id}", status_code=303)

    @get("/groups/{group_id:uuid}", name="group")
    async def group(self, request: Request[Any, Any, Any], services: ServicesDep, group_id: FromPath[uuid.UUID]) -> Any:
        viewer = _viewer(request, services)
        if isinstance(viewer, Redirect):
            return viewer
        found = await overview.group(services.db, group_id)
        if not viewer.sees(found["org_id"]):
            raise NotFound(f"no group {group_id}", group_id=str(group_id))
        counts: dict[str, int] = {}
        for row in found["jobs"]:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return render_page(
            request,
            "group.html",
            viewer,
            group=found,
            counts=counts,
            may_act=access.may_act(viewer, found["org_id"]),
            live={"org_id": found["org_id"]},
        )

    @get("/orgs", name="orgs")
    async def org_list(self, request: Request[Any, Any, Any], services: ServicesDep) -> Any:
        viewer = _viewer(request, services)
        if isinstance(viewer, Redirect):
            return viewer
        if viewer.role is not Role.ADMIN:
            return Redirect(f"/orgs/{quote(viewer.org_id or '', safe='')}")
        rows = await reporting.run_report(
            services.db, reporting.ReportName.ORG_SUCCESS_RATES, reporting.ReportFilter(limit=500)
        )
        tiers = {row.id: row.tier for row in await orgs.list_orgs(services.db)}
        return render_page(request, "orgs.html", viewer, rates=rows, tiers=tiers)

    @get("/orgs/{org_id:str}", name="org")
    async def org(self, request: Request[Any, Any, Any], services: ServicesDep, org_id: FromPath[str]) -> Any:
        viewer = _viewer(request, services)
        if isinstance(viewer, Redirect):
            return viewer
        if not viewer.sees(org_id):
            raise NotFound(f"no org {org_id}", org_id=org_id)
        found = await orgs.get(services.db, org_id)
        window = reporting.ReportFilter(org_id=org_id, limit=20)
        rates = await reporting.run_report(services.db, reporting.ReportName.ORG_SUCCESS_RATES, window)
        flaky = await reporting.run_report(services.db, reporting.ReportName.FLAKY_TESTS, window)
        versions = await reporting.run_report(services.db, reporting.ReportName.APP_VERSIONS, window)
        days = await overview.org_days(services.db, org_id, 30)
        return render_page(
            request,
            "org.html",
            viewer,
            org=found,
            tier=found.tier,
            tiers=[t.value for t in Tier],
            rates=rates[0] if rates else None,
            flaky=flaky,
            versions=versions,
            days=days,
            **_charts(days),
            live={"org_id": org_id},
        )

    @post("/orgs/{org_id:str}/tier", status_code=303)
    async def set_tier(self, request: Request[Any, Any, Any], services: ServicesDep, org_id: FromPath[str]) -> Any:
        viewer, fields = await _acting(request, services)
        if viewer.role is not Role.ADMIN:
            raise PermissionDeniedException(detail="only the admin may change an org's tier")
        try:
            tier = Tier(fields.get("tier", ""))
        except ValueError:
            raise InvalidInput(f"no tier {fields.get('tier')!r}", field="tier") from None
        await orgs.get(services.db, org_id)  # a page can only re-tier an org it showed
        await orgs.set_tier(services.db, org_id, tier)
        return Redirect(f"/orgs/{quote(org_id, safe='')}", status_code=303)

    @post("/targets/{target:str}/cap", status_code=303)
    async def set_target_cap(
        self, request: Request[Any, Any, Any], services: ServicesDep, target: FromPath[str]
    ) -> Any:
        viewer, fields = await _acting(request, services)
        if viewer.role is not Role.ADMIN:
            raise PermissionDeniedException(detail="only the admin may cap a target")
        try:
            which = Target(target)
        except ValueError:
            raise InvalidInput(f"no target {target!r}", field="target") from None
        raw = fields.get("max_running", "").strip()
        if raw and not (raw.isascii() and raw.isdigit() and int(raw) <= 1_000_000):
            raise InvalidInput(
                f"max_running must be a whole number >= 0 or empty (no cap), not {raw!r}", field="max_running"
            )
        await capacity.set_target_cap(services.queue, which, int(raw) if raw else None)
        return Redirect("/#targets-h", status_code=303)

    @get("/agents", name="agents")
    async def agent_list(self, request: Request[Any, Any, Any], services: ServicesDep) -> Any:
        viewer = _viewer(request, services)
        if isinstance(viewer, Redirect):
            return viewer
        if viewer.role is not Role.ADMIN:
            raise PermissionDeniedException(detail="agents are the admin's to see")
        rows = await agents.list_agents(services.queue)
        return render_page(request, "agents.html", viewer, agents=rows, live={})


async def _acting(request: Request[Any, Any, Any], services: Services) -> tuple[Principal, dict[str, str]]:
    access.check_host(request, services)
    fields = await access.check_form(request)
    return access.require_principal(request), fields


async def _visible_job(services: Services, viewer: Principal, job_id: uuid.UUID, acting: bool = False) -> Any:
    row = await jobs.get(services.queue, job_id, with_attempts=True)
    if not viewer.sees(row["org_id"]):
        raise NotFound(f"no job {job_id}", job_id=str(job_id))
    if acting and not access.may_act(viewer, row["org_id"]):
        raise PermissionDeniedException(detail="this session may not change that job")
    return row


def _uuid(value: str | None, field: str) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput(f"{field} must be a job or group id (a UUID)", field=field) from None


def _selection(params: dict[str, str], viewer: Principal) -> Selection:
    try:
        target = Target(params["target"]) if params.get("target") else None
        status = (JobStatus(params["status"]),) if params.get("status") else ()
    except ValueError as err:
        raise InvalidInput(str(err), field="status" if "JobStatus" in str(err) else "target") from None
    for name in ("org_id", "app_version_id", "q"):
        value = params.get(name) or ""
        if len(value) > 1024 or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
            raise InvalidInput(f"{name} has control characters or is too long", field=name)
    org = viewer.org_filter(params.get("org_id") or None)
    return Selection(
        org,
        params.get("app_version_id") or None,
        _uuid(params.get("group_id"), "group_id"),
        target,
        status,
        params.get("q") or None,
    )


def _done(flash: str | None) -> str | None:
    """The notice after a bulk action (`cancelled-3`), from the redirect's query."""
    verb, _, count = (flash or "").partition("-")
    if verb not in ("cancelled", "retried") or not count.isdigit():
        return None
    return f"{'Cancelled' if verb == 'cancelled' else 'Re-queued'} {count} job{'' if count == '1' else 's'}."


def _query(fields: dict[str, str]) -> str:
    return urlencode({key: fields[key] for key in _FILTERS if fields.get(key)})


def _charts(days: list[dict[str, Any]]) -> dict[str, Any]:
    today = dt.datetime.now(dt.UTC).date()
    span = charts.days(today - dt.timedelta(days=29), today)
    by_day = {row["day"]: row for row in days}
    rate_points, duration_points = [], []
    for day in span:
        row = by_day.get(day)
        decided = row["decided"] if row else 0
        rate = row["completed"] / decided if row and decided else None
        rate_points.append(
            charts.Point(
                day, None if rate is None else rate * 100, f"{rate:.0%} of {decided}" if rate is not None else "no runs"
            )
        )
        mean = row["mean_seconds"] if row else None
        duration_points.append(charts.Point(day, mean, f"{mean:.1f} s mean" if mean is not None else "no runs"))
    return {
        "rate_chart": charts.bars(rate_points, 100.0, "Success rate per day, last 30 days", "%"),
        "duration_chart": charts.bars(duration_points, None, "Mean test duration per day, last 30 days", "seconds"),
    }
