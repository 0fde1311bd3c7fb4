"""PostgreSQL LISTEN/NOTIFY for one server process: one listening connection, fanned out in memory to
the requests waiting on jobs (long-polls, SSE streams) and to agents waiting for work."""

from qualgent.server.notify.hub import CHANNEL, Hub

__all__ = ["CHANNEL", "Hub"]
