"""Templates: Jinja2 with autoescaping, loaded once from the package, and the filters pages use."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from litestar import Response
from litestar.enums import MediaType

# Pages change as jobs do: never cached by a browser or a proxy (they also carry a user's data).
NO_STORE = {"Cache-Control": "no-store"}
SECURITY_HEADERS = {
    # Every asset comes from this server; scripts only from our own file; no framing by another site.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("qualgent.server.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ago=ago, seconds=seconds, when=when, percent=percent, text=plain)
    return env


def page(name: str, context: dict[str, Any], status_code: int = 200) -> Response[str]:
    html = environment().get_template(name).render(**context)
    return Response(html, status_code=status_code, media_type=MediaType.HTML, headers={**NO_STORE, **SECURITY_HEADERS})


def plain(value: Any) -> str:
    """An enum's value, or the thing itself, as text ('' for None)."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))


def when(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if value is None:
        return "never"
    delta = ((now or dt.datetime.now(dt.UTC)) - value).total_seconds()
    return f"{seconds(abs(delta))} ago" if delta >= 0 else f"in {seconds(-delta)}"


def seconds(value: float | int | None) -> str:
    """A duration for people: 850 ms, 12.3 s, 4 min 5 s, 2 h 3 min."""
    if value is None:
        return ""
    value = float(value)
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"
