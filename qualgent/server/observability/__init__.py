"""Seeing into a running qualgent: Prometheus metrics (metrics) and structured logs (qualgent.logs)."""
