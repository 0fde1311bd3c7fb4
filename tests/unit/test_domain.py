from __future__ import annotations

import pytest

from qualgent.domain import Outcome, Priority, Tier
from qualgent.domain.types import classify_exit_code


@pytest.mark.parametrize(
    ("code", "outcome"),
    [(0, Outcome.PASSED), (1, Outcome.TEST_FAILED), (2, Outcome.INFRA_ERROR), (3, Outcome.INFRA_ERROR),
     (137, Outcome.INFRA_ERROR), (-9, Outcome.INFRA_ERROR), (None, Outcome.INFRA_ERROR)],
)  # fmt: skip
def test_exit_codes_of_the_run_command(code: int | None, outcome: Outcome) -> None:
    assert classify_exit_code(code) is outcome


def test_enum_order_is_scheduling_order() -> None:
    assert list(Priority) == [Priority.HIGH, Priority.MEDIUM, Priority.LOW]
    assert list(Tier) == [Tier.PREMIUM, Tier.ENTERPRISE, Tier.STANDARD]
