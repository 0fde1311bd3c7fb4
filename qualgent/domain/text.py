"""What text a name may hold: the one rule for identifiers (org, app version, agent and token names) and test paths,
written as regular expressions that msgspec checks in bodies, Litestar in query and path parameters, the CLI before
it sends anything, and the OpenAPI document shows (Python's and JavaScript's regex read them alike).

Refused anywhere in the text (docs/security.md):
- control characters, C0 (U+0000-U+001F), DEL and C1 (U+007F-U+009F, NEL among them): NUL is refused by
  PostgreSQL, a line break forges a log line, an escape drives a terminal;
- the line and paragraph separators U+2028 and U+2029, line breaks to JavaScript and to many log viewers;
- Unicode's bidirectional controls (its Bidi_Control property): the embeddings and overrides U+202A-U+202E, the
  isolates U+2066-U+2069 and the marks U+200E, U+200F and U+061C, which make a name read differently from what it
  is ("Trojan Source", CVE-2021-42574);
and at the start, `-`: a name or a path is formatted into the agent's command templates as one argument, and an
argument that starts with `-` reads as an option (`--help`, `--reporter=...`) to the program that gets it.
"""

from __future__ import annotations

import re

# One character class (regex syntax) of what may appear nowhere.
FORBIDDEN_CHARACTERS = r"\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"

# `$(?!\n)`, not `$`: Python's `$` also matches before a final newline; the lookahead means the same in JavaScript.
NAME_PATTERN = rf"^[^\-{FORBIDDEN_CHARACTERS}][^{FORBIDDEN_CHARACTERS}]*$(?!\n)"

NAME_RULE = "no control, line-separator or bidirectional-control characters, not starting with '-'"

_NAME = re.compile(NAME_PATTERN)


def is_clean_name(text: str) -> bool:
    """True when `text` follows the rule (its length is the caller's to bound)."""
    return _NAME.match(text) is not None
