"""The API docs page at /api/schema: Redoc, served by this server with no CDN (no script, font or image from
another host), so it works offline and behind a firewall. The JSON document is at /api/schema/openapi.json."""

from __future__ import annotations

import functools
from pathlib import Path

from litestar import Response, get
from litestar.openapi.plugins import RedocRenderPlugin

REDOC_VERSION = "2.5.4"  # qualgent/server/api/static/redoc/README.md says how it was vendored
REDOC_PATH = "/api/schema/assets/redoc.standalone.js"
_BUNDLE = Path(__file__).with_name("static") / "redoc" / "redoc.standalone.js"


def redoc_plugin() -> RedocRenderPlugin:
    """Redoc at /api/schema (and /api/schema/redoc), its script from this server, no Google fonts or favicon."""
    return RedocRenderPlugin(
        path=["/", "/redoc"],
        js_url=f"{REDOC_PATH}?v={REDOC_VERSION}",
        google_fonts=False,
        favicon="<link rel='icon' href='data:,'>",  # none: the default is an image on a CDN
    )


@functools.cache
def _bundle() -> bytes:
    return _BUNDLE.read_bytes()


@get(REDOC_PATH, include_in_schema=False, sync_to_thread=False)
def redoc_bundle() -> Response[bytes]:
    return Response(
        _bundle(),
        media_type="application/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=86400"},
    )
