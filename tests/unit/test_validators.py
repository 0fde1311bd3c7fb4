"""Property tests of the input rules (qualgent.server.api.schemas), against oracles written independently of
the regular expressions that implement them. The CLI side is tests/e2e/test_security.py."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qualgent.agent.templates import CommandTemplate
from qualgent.domain import InvalidInput, Priority, Target
from qualgent.server.api.schemas import (
    MAX_BULK,
    IdempotencyKey,
    Identifier,
    JobIn,
    ResultIn,
    TestPath,
    check_bulk,
    violation,
)

# Unicode's Bidi_Control characters (PropList.txt) and the two separators, listed one by one.
_BIDI_CONTROLS = {0x061C, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069}
_SEPARATORS = {0x2028, 0x2029}


def _refused(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F or code in _BIDI_CONTROLS or code in _SEPARATORS


def identifier_ok(text: str) -> bool:
    return 1 <= len(text) <= 128 and not text.startswith("-") and not any(_refused(c) for c in text)


def path_ok(text: str) -> bool:
    return 1 <= len(text) <= 1024 and not text.startswith("-") and not any(_refused(c) for c in text)


# Text biased towards the edges: control characters, '-', newlines at the end, long runs.
edgy_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\x9f", "-", " ", "/", ";"]),
        st.sampled_from(["\u061c", "\u200d", "\u200e", "\u200f", "\u2027", "\u2028", "\u2029", "\u202a"]),
        st.sampled_from(["\u202e", "\u202f", "\u2065", "\u2066", "\u2069", "\u206a", "\ufeff"]),
    ),
    max_size=140,
) | st.builds(lambda s, tail: s + tail, st.text(max_size=20), st.sampled_from(["\n", "\x00", ""]))


@settings(max_examples=500, derandomize=True)
@given(edgy_text | st.builds(lambda s: "-" + s, st.text(max_size=10)))
def test_identifiers_refuse_control_bidi_and_separator_characters_and_a_dash_first(text: str) -> None:
    assert (violation(text, Identifier) is None) == identifier_ok(text), repr(text)


@settings(max_examples=500, derandomize=True)
@given(edgy_text | st.builds(lambda s: "-" + s, st.text(max_size=10)))
def test_a_test_path_never_starts_with_a_dash_or_holds_a_control_character(text: str) -> None:
    assert (violation(text, TestPath) is None) == path_ok(text), repr(text)


@settings(max_examples=300, derandomize=True)
@given(st.text(max_size=300))
def test_long_paths_are_counted_in_characters(text: str) -> None:
    path = "t/" + text * 5
    assert (violation(path, TestPath) is None) == path_ok(path)


@settings(max_examples=300, derandomize=True)
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=260))
def test_idempotency_keys_are_printable_ascii_without_spaces(text: str) -> None:
    expected = 1 <= len(text) <= 255 and all(0x21 <= ord(c) <= 0x7E for c in text)
    assert (violation(text, IdempotencyKey) is None) == expected


valid_identifiers = st.text(min_size=1, max_size=128).filter(identifier_ok)
valid_paths = st.text(min_size=1, max_size=200).filter(path_ok)


@settings(max_examples=200, derandomize=True)
@given(valid_identifiers, valid_identifiers, valid_paths, st.sampled_from(Priority), st.sampled_from(Target))
def test_every_valid_job_survives_json_unchanged(
    org: str, app: str, path: str, priority: Priority, target: Target
) -> None:
    job = JobIn(org, app, path, priority, target)
    assert msgspec.json.decode(msgspec.json.encode(job), type=JobIn) == job


@settings(max_examples=300, derandomize=True)
@given(valid_paths | st.sampled_from(["a.spec.js; touch /tmp/x", "$(reboot)", "`id`", "a b", "x' || 'y", "*"]))
def test_any_accepted_test_path_is_exactly_one_argument_of_the_run_command(path: str) -> None:
    assert violation(path, TestPath) is None
    run = CommandTemplate.parse("npx appwright test --project android {test_path}")
    assert run.render(test_path=path, app_version_id="v", target="emulator", job_id="j", org_id="o") == [
        "npx",
        "appwright",
        "test",
        "--project",
        "android",
        path,
    ]


@settings(max_examples=200, derandomize=True)
@given(st.text(max_size=200))
def test_test_output_with_nul_bytes_is_kept_without_them(output: str) -> None:
    body = {"group_id": str(_UUID), "token": str(_UUID), "exit_code": 1, "output_tail": output, "error": output}
    result = msgspec.convert(body, ResultIn)
    assert result.output_tail is not None
    assert "\x00" not in result.output_tail
    assert len(result.output_tail) == len(output)
    assert result.output_tail.replace("\ufffd", "\x00") == output.replace("\ufffd", "\x00")


_UUID = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize("exit_code", [2**31, -(2**31) - 1, 2**63])
def test_exit_codes_beyond_a_postgresql_integer_are_refused(exit_code: int) -> None:
    with pytest.raises(msgspec.ValidationError, match="exit_code"):
        msgspec.convert({"group_id": _UUID, "token": _UUID, "exit_code": exit_code}, ResultIn)


def test_a_bulk_submission_holds_1_to_max_jobs() -> None:
    job = JobIn("acme", "v1", "a.ts")
    check_bulk([job])
    check_bulk([job] * MAX_BULK)
    for wrong in ([], [job] * (MAX_BULK + 1)):
        with pytest.raises(InvalidInput) as refused:
            check_bulk(wrong)
        assert refused.value.details == {"field": "body"}
