"""The HTTP API (Litestar). `create_app(settings)` builds it; nothing happens at import."""

from qualgent.api.app import create_app

__all__ = ["create_app"]
