"""How `qgjob report` reads a time window and prints durations."""

from __future__ import annotations

import datetime as dt

import pytest

from qualgent.cli.report import parse_moment, percent, seconds

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("7d", dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)),
        ("24h", dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)),
        ("30m", dt.datetime(2026, 11, 28, 11, 30, tzinfo=dt.UTC)),
        ("2w", dt.datetime(2026, 11, 14, 12, 0, tzinfo=dt.UTC)),
        ("2026-11-01", dt.datetime(2026, 11, 1, tzinfo=dt.UTC)),
        ("2026-11-01T08:00:00+02:00", dt.datetime(2026, 11, 1, 6, 0, tzinfo=dt.UTC)),
        ("all", None),
    ],
)
def test_windows_read_as_spans_dates_or_all(given: str, expected: dt.datetime | None) -> None:
    assert parse_moment(given, NOW) == expected


@pytest.mark.parametrize("given", ["last tuesday", "7", "-7d", "7y", ""])
def test_anything_else_is_refused_with_the_forms_it_takes(given: str) -> None:
    with pytest.raises(ValueError, match="7d, 24h"):
        parse_moment(given, NOW)


def test_durations_and_rates_read_at_a_glance() -> None:
    assert [seconds(v) for v in (None, 1.24, 59.9, 61, 3600 + 125)] == ["-", "1.2s", "59.9s", "1m01s", "1h02m"]
    assert [percent(v) for v in (None, 0.75, 2 / 3)] == ["-", "75.0%", "66.7%"]
