"""The dashboard's pieces without a server: session cookies, charts, filters for people."""

from __future__ import annotations

import datetime as dt

from qualgent.server.api import sessions
from qualgent.server.web import charts, render

KEY = "the-admin-token"


def test_a_session_cookie_opens_with_the_same_admin_token_only() -> None:
    value = sessions.seal(KEY, "admin", now=1000.0, lifetime=60)
    assert sessions.open_cookie(KEY, value, now=1010.0) == sessions.Session("admin", 1060)
    assert sessions.open_cookie("another-admin-token", value, now=1010.0) is None
    assert sessions.open_cookie(KEY, value, now=1060.0) is None, "expired"


def test_a_tampered_or_malformed_cookie_is_refused() -> None:
    value = sessions.seal(KEY, "a" * 64, now=1000.0)
    payload, signature = value.split(".")
    forged_payload = sessions.seal("guess", "admin", now=1000.0).split(".")[0]
    for bad in (f"{forged_payload}.{signature}", f"{payload}.{signature[:-2]}", "", ".", "x" * 600, "a.b.c", "é.é"):
        assert sessions.open_cookie(KEY, bad, now=1001.0) is None, bad


def test_the_cookie_is_read_from_raw_headers() -> None:
    headers = [(b"host", b"x"), (b"cookie", b"a=1; qualgent_session=abc.def; b=2")]
    assert sessions.cookie_of(headers) == "abc.def"
    assert sessions.cookie_of([(b"cookie", b"qualgent_session=")]) is None
    assert sessions.cookie_of([]) is None


def test_a_chart_escapes_its_labels_and_scales_its_bars() -> None:
    day = dt.date(2026, 12, 1)
    svg = str(charts.bars([charts.Point(day, 50.0, "<b>half</b>"), charts.Point(day, None, "none")], 100.0, "T&T", "%"))
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert "<b>" not in svg
    assert "&lt;b&gt;half" in svg
    assert "T&amp;T" in svg
    assert svg.count('class="bar"') == 1, "a day without runs draws no bar"


def test_durations_and_rates_read_as_people_say_them() -> None:
    assert render.seconds(0.25) == "250 ms"
    assert render.seconds(12.34) == "12.3 s"
    assert render.seconds(245) == "4 min 5 s"
    assert render.seconds(7380) == "2 h 3 min"
    assert render.percent(None) == "-"
    assert render.percent(0.876) == "88%"
    now = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
    assert render.ago(now - dt.timedelta(seconds=90), now) == "1 min 30 s ago"
    assert render.ago(None) == "never"
