"""`qgjob bench`: qualgent's throughput and latency against raw PostgreSQL baselines measured in the same run.

Each module measures one thing against a `BenchTarget` (a running server on a scratch database) and returns
plain figures; `qualgent.server.bench.run` puts them together with their baselines and ratios."""
