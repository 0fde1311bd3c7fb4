"""The dashboard's pages against the JSON API routes that answer the same question, on one server.

    .venv/bin/python -m benchmarks.dashboard [--server-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--jobs 5000] [--rounds 300]

It makes a scratch database on that server (migrated by the real migrations, dropped at the end), starts a
`qgjob server` on it (authentication off), submits --jobs jobs over 20 orgs and 100 builds through the API, then
requests each pair alternately (page, route, page, route...) over one keep-alive connection and reports the
median and p95 wall time of each and the page's ratio to the route. Not collected by pytest: a measurement.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from qualgent.server.bench.common import ServerProcess
from qualgent.server.bench.run import scratch_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    with (
        scratch_database(args.server_url) as url,
        tempfile.TemporaryDirectory() as scratch,
        ServerProcess(url, Path(scratch) / "server.log") as server,
    ):
        run(server, args.jobs, args.rounds)


def run(server: ServerProcess, jobs: int, rounds: int) -> None:
    base = f"http://127.0.0.1:{server.port}"
    with httpx.Client(base_url=base, timeout=60) as client:
        batch = [
            {"org_id": f"org{n % 20}", "app_version_id": f"v{n % 100}", "test_path": f"tests/case{n}.spec.ts"}
            for n in range(jobs)
        ]
        for start in range(0, jobs, 5000):
            assert client.post("/api/jobs", json=batch[start : start + 5000]).status_code == 201
        job = client.get("/api/jobs", params={"limit": 1}).json()[0]
        pairs = [
            ("a job", f"/jobs/{job['id']}", f"/api/jobs/{job['id']}"),
            ("an org's jobs, 50", "/jobs?org_id=org3", "/api/jobs?org_id=org3&limit=50"),
            ("the overview", "/", "/api/jobs/queue/status"),
        ]
        print(f"{jobs} pending jobs, {rounds} rounds, medians and p95 in ms")
        print(f"{'':<20} {'page p50':>9} {'route p50':>10} {'ratio':>6} {'page p95':>9} {'route p95':>10}")
        for label, page, route in pairs:
            timings: dict[str, list[float]] = {page: [], route: []}
            for _ in range(rounds):
                for path in (page, route):
                    started = time.perf_counter()
                    response = client.get(path)
                    timings[path].append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, (path, response.status_code)
            p50 = {path: statistics.median(values) for path, values in timings.items()}
            p95 = {path: statistics.quantiles(values, n=20)[-1] for path, values in timings.items()}
            print(
                f"{label:<20} {p50[page]:>9.2f} {p50[route]:>10.2f} {p50[page] / p50[route]:>5.2f}x "
                f"{p95[page]:>9.2f} {p95[route]:>10.2f}"
            )


if __name__ == "__main__":
    main()
