"""Options every client command shares."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import rich_click as click

from qualgent.cli.client import DEFAULT_API_URL, ApiClient
from qualgent.wire import violation

F = TypeVar("F", bound=Callable[..., Any])


def _token(_: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A token goes into an HTTP header: printable ASCII without spaces, or it could not be sent."""
    if value is not None and not re.fullmatch(r"[\x21-\x7e]{1,256}", value):
        raise click.BadParameter("must be 1-256 printable ASCII characters without spaces", param=param)
    return value


def api_options(func: F) -> F:
    func = click.option(
        "--token",
        envvar="QGJOB_TOKEN",
        default=None,
        show_envvar=True,
        callback=_token,
        help="API token, sent as `Authorization: Bearer`.",
    )(func)
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


def checked(kind: Any) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback that refuses (exit 2, naming the flag) what the API would refuse for `kind`,
    one of the types of qualgent.server.api.schemas; repeated flags are checked one by one."""

    def check(_: click.Context, param: click.Parameter, value: Any) -> Any:
        for item in value if isinstance(value, tuple) else (value,):
            if item is not None and (problem := violation(item, kind)):
                raise click.BadParameter(f"{_shown(item)} {problem}", param=param)
        return value

    return check


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
