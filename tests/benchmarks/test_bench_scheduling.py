"""The scheduling benchmark runs both policies over one workload through the real SQL, and its figures add up.
The figures themselves are for people (docs/performance.md)."""

from __future__ import annotations

from benchmarks import scheduling


def test_both_policies_run_every_job_and_report_consistent_figures(pg_server: str) -> None:
    workload = scheduling.generate(seed=3, agents=3, window=900.0)
    result = scheduling.measure(pg_server, seed=3, agents=3, window=900.0)
    for name in ("qualgent", "plain_order"):
        figures = result[name]
        assert figures["jobs"] == workload.jobs
        assert set(figures["p95_wait_s"]) == {"premium", "enterprise", "standard"}
        assert figures["makespan_s"] >= figures["makespan_lower_bound_s"] - 1
        # Each (build, agent) pair that ran installed at least once.
        assert figures["installs"] >= figures["distinct_build_agent_pairs"] > 0
    # The plain order's agents install for every group; held builds make some installs unneeded.
    assert result["plain_order"]["installs"] == result["plain_order"]["groups_claimed"]
    assert result["qualgent"]["installs"] <= result["qualgent"]["groups_claimed"]
