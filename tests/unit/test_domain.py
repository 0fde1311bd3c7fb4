from __future__ import annotations

import pytest

from qualgent.domain import Outcome, Priority, Tier
from qualgent.domain.types import classify_exit_code, retry_delay_seconds


@pytest.mark.parametrize(
    ("code", "outcome"),
    [(0, Outcome.PASSED), (1, Outcome.TEST_FAILED), (2, Outcome.INFRA_ERROR), (3, Outcome.INFRA_ERROR),
     (137, Outcome.INFRA_ERROR), (-9, Outcome.INFRA_ERROR), (None, Outcome.INFRA_ERROR)],
)  # fmt: skip
def test_exit_codes_of_the_run_command(code: int | None, outcome: Outcome) -> None:
    assert classify_exit_code(code) is outcome


def test_backoff_doubles_is_capped_and_jittered() -> None:
    for attempt, nominal in ((1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (50, 300.0)):
        delays = {retry_delay_seconds(attempt) for _ in range(50)}
        assert all(0.75 * nominal <= d <= 1.25 * nominal for d in delays)
        assert len(delays) > 1, "jitter spreads retries out"


def test_enum_order_is_scheduling_order() -> None:
    assert list(Priority) == [Priority.HIGH, Priority.MEDIUM, Priority.LOW]
    assert list(Tier) == [Tier.PREMIUM, Tier.ENTERPRISE, Tier.STANDARD]
