"""The CLI's HTTP client (httpx, sync). Errors become ClickExceptions with the right exit code."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

if TYPE_CHECKING:  # httpx is imported when a client is made: `qgjob <command> --help` never needs it
    import httpx

from qualgent.cli.exit_codes import BAD_INPUT, INFRA_ERROR

DEFAULT_API_URL = "http://127.0.0.1:3000/api"


class CliError(click.ClickException):
    """A message for the user and the exit code it deserves (2 bad input, 3 infrastructure). `unreachable`:
    no HTTP answer at all (refused, reset, timed out), as opposed to an answer with an error status."""

    def __init__(self, message: str, exit_code: int, unreachable: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it a ClassVar; per-instance is intended
        self.unreachable = unreachable


@dataclass(frozen=True, slots=True)
class Submission:
    """What POST /jobs answered: the jobs, whether they were queued before (an idempotent replay: nothing new
    was queued), and the server's warnings (e.g. an org id that differs from an existing one only by case)."""

    jobs: list[dict[str, Any]]
    replayed: bool = False
    warnings: list[str] = field(default_factory=list)


class ApiClient:
    def __init__(self, api_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.api_url = api_url.rstrip("/")
        self.last_headers = httpx.Headers()
        self._http = httpx.Client(base_url=self.api_url, headers=headers, timeout=timeout)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        for _ in range(RATE_LIMIT_RETRIES):  # 429: wait as long as the server asks, a few times
            if response.status_code != 429:
                break
            time.sleep(min(MAX_RETRY_AFTER, _retry_after(response)))
            response = self._send(method, path, **kwargs)
        self.last_headers = response.headers
        if response.status_code == 204:
            return None
        if response.is_success:
            try:
                return response.json()
            except ValueError:  # e.g. a web page: the dashboard at /jobs when --api-url lacks /api
                kind = response.headers.get("content-type", "no content type")
                message = f"server answered {response.status_code} with {kind}, not the API's JSON"
                raise CliError(message + _prefix_hint(self.api_url), BAD_INPUT) from None
        raise CliError(_describe(response, self.api_url), BAD_INPUT if response.status_code < 500 else INFRA_ERROR)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as err:
            message = f"cannot reach the qualgent server at {self.api_url}: {err}"
            raise CliError(message, INFRA_ERROR, unreachable=True) from err

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json=body)

    def submit(self, body: list[dict[str, Any]], idempotency_key: str | None, retry_for: float = 60.0) -> Submission:
        """POST /jobs. With an idempotency key a lost answer is safe to retry: retry with backoff for up to
        `retry_for` seconds while the server or its database is away (a CI step should survive a restart)."""
        if idempotency_key is None:
            return self._submission(self.post("/jobs", body))
        headers = {"Idempotency-Key": idempotency_key}
        deadline, backoff = time.monotonic() + retry_for, 0.5
        while True:
            try:
                return self._submission(self.request("POST", "/jobs", json=body, headers=headers))
            except CliError as err:
                if err.exit_code != INFRA_ERROR or time.monotonic() > deadline:
                    raise
                time.sleep(min(backoff, max(0.1, deadline - time.monotonic())))
                backoff = min(5.0, backoff * 2)

    def _submission(self, jobs: Any) -> Submission:
        headers = self.last_headers
        warning = headers.get("Qualgent-Warning")
        return Submission(jobs, headers.get("Idempotent-Replayed") == "true", warning.split(" | ") if warning else [])

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


RATE_LIMIT_RETRIES = 3
MAX_RETRY_AFTER = 30.0


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.1, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _describe(response: httpx.Response, api_url: str = DEFAULT_API_URL) -> str:
    try:
        body = response.json()
    except ValueError:
        hint = _prefix_hint(api_url) if response.status_code == 404 else ""
        return f"server answered {response.status_code}: {response.text[:200]}" + hint
    detail = body.get("detail", "") if isinstance(body, dict) else str(body)
    extra = body.get("extra") if isinstance(body, dict) else None
    if isinstance(extra, list):
        fields = "; ".join(f"{e.get('key', '?')}: {e.get('message', '')}" for e in extra if isinstance(e, dict))
        detail = f"{detail} ({fields})" if fields else detail
    if response.status_code == 401:
        detail += " (give a token with --token or QGJOB_TOKEN)"
    hint = _prefix_hint(api_url) if response.status_code == 404 else ""
    return f"server answered {response.status_code}: {detail}{hint}"


def _prefix_hint(api_url: str) -> str:
    """A route not found, or a page that is not the API: most often an --api-url without the /api prefix."""
    if urlsplit(api_url).path.rstrip("/").endswith("/api"):
        return ""
    return f" (the API lives under /api: did you mean --api-url {api_url.rstrip('/')}/api?)"
