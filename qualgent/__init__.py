"""qualgent: queue, group and dispatch mobile end-to-end tests on PostgreSQL."""

__version__ = "0.1.0"
__all__ = ["__version__"]
