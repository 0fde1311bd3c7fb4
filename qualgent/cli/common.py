"""Options every client command shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import rich_click as click

from qualgent.cli.client import DEFAULT_API_URL, ApiClient

F = TypeVar("F", bound=Callable[..., Any])


def api_options(func: F) -> F:
    func = click.option("--token", envvar="QGJOB_TOKEN", default=None, show_envvar=True, help="API token (Bearer).")(
        func
    )
    func = click.option(
        "--api-url",
        envvar="QGJOB_API_URL",
        default=DEFAULT_API_URL,
        show_default=True,
        show_envvar=True,
        help="The qualgent API.",
    )(func)
    return func


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON only, for machines.")(func)


def client(api_url: str, token: str | None) -> ApiClient:
    return ApiClient(api_url, token)
