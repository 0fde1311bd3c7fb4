"""Command templates: a command line split like a shell would (no shell is ever run), each word
formatted with the job's fields. Only plain {name} placeholders are allowed: no attribute access,
no indexing, so a template cannot reach into Python objects."""

from __future__ import annotations

import shlex
import string
from dataclasses import dataclass

FIELDS = ("app_version_id", "test_path", "target", "job_id", "org_id")


class TemplateError(ValueError):
    """A command template that cannot be used."""


@dataclass(frozen=True, slots=True)
class CommandTemplate:
    words: tuple[str, ...]

    @classmethod
    def parse(cls, line: str, allowed: tuple[str, ...] = FIELDS) -> CommandTemplate:
        try:
            words = tuple(shlex.split(line))
        except ValueError as err:
            raise TemplateError(f"cannot split {line!r}: {err}") from None
        if not words:
            raise TemplateError("the command is empty")
        for word in words:
            _check_word(word, allowed)
        return cls(words)

    def render(self, **fields: str) -> list[str]:
        """One argv; a field's value stays inside its word, whatever characters it holds."""
        return [word.format_map(fields) for word in self.words]


def _check_word(word: str, allowed: tuple[str, ...]) -> None:
    try:
        parsed = list(string.Formatter().parse(word))
    except ValueError as err:
        raise TemplateError(f"bad placeholder in {word!r}: {err} (write {{{{ and }}}} for literal braces)") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in allowed or spec or conversion:
            raise TemplateError(
                f"unknown placeholder {{{name}}} in {word!r}; allowed: " + ", ".join(f"{{{f}}}" for f in allowed)
            )
