"""Commit to waiter latency alone (qualgent.server.bench.waiters, which `qgjob bench` also runs), with any number of
waiters and finishes:

    python -m benchmarks.waiting --database-url postgresql://postgres@127.0.0.1:5432/scratch \\
        [--api-url http://127.0.0.1:3000/api] [--waiters 1 --waiters 1000] [--finishes 200]

With no --api-url it starts `qgjob server --migrate` on the scratch database itself. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from benchmarks.common import target_for
from qualgent.server.bench.waiters import measure_wait_latency


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.waiting", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a scratch database (jobs are added to it)")
    parser.add_argument("--api-url", help="a qgjob server on that database (default: start one)")
    parser.add_argument("--token", help="an admin token, if the server needs one")
    parser.add_argument("--waiters", type=int, action="append", help="repeatable (default: 1 and 1000)")
    parser.add_argument("--finishes", type=int, default=200)
    args = parser.parse_args(argv)
    counts = args.waiters or [1, 1000]
    with target_for(args.database_url, args.api_url, args.token) as target:
        results = [asyncio.run(measure_wait_latency(target, n, args.finishes)) for n in counts]
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
