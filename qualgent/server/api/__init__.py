"""The HTTP API (Litestar). `create_app(settings)` builds it; nothing happens at import.

`create_app` is imported on first use, not with the package: the app imports every controller and the
dashboard (qualgent.server.web), which imports qualgent.server.api.auth, so an eager import here would be an import
cycle
(api -> app -> web -> api), and `import qualgent.server.api.schemas` would load the whole server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qualgent.server.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from qualgent.server.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
