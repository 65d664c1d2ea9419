"""Knob values rendered as source text, per dialect, so that each reads back as itself.

Rendering is lossless (`repr` for floats) and keeps each line's style: a string written bare
stays bare when the file's own reader would read it back unchanged (see `_render_str`), and is
quoted only where that reader strips the quotes. Each dialect's reader differs (YAML reads `yes`
as a bool, configparser and make keep quotes as part of the value, a shell expands `$` inside
double quotes), which is why this lives apart from finding the lines (`knob_lines`): it is the
one place that knows what each reader makes of a written value.
"""

from __future__ import annotations

import json
import math
import re

from autoresearch.proposers.knob_lines import Dialect, comment_start, dialect_name, parse_value
from autoresearch.proposers.knob_space import Scalar


def _render_float(value: float, dialect: Dialect) -> str:
    text = repr(value)
    if dialect != "python" and "e" in text and "." not in text:
        # YAML 1.1 (PyYAML) reads `1e-05` as a string; `1.0e-05` is a float everywhere.
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


def _quote_of(current: str) -> str:
    """The quote character of a string literal's source (`r"..."` keeps `"`), or ""."""
    if current[:1] in ("'", '"'):
        return current[0]
    if current[:1].isalpha() and current[1:2] in ("'", '"'):
        return current[1]
    return ""


# Words YAML 1.1 (PyYAML) reads as a bool or null; `true`, `null`, `none` and `~` are that in
# tune's own reading of every non-Python file too.
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "none", "~"})
# What a YAML plain scalar may start with: no indicator (`- ? : , [ ] { } # & * ! | > ' " % @ `)
# except `-`, `+` and `.` before a character that makes no number of them (`-O3`, `.hidden`).
_YAML_START = re.compile(r"[A-Za-z_/$(]|[-+][^\d\s.]|\.[^\d\s]")
# A word a shell reads as itself (`source .env`): nothing it would split, expand or redirect.
_SHELL_WORD = re.compile(r"[\w.\-/+=:,@%^]+")
# Where quotes are part of the value (configparser, make): a string that cannot be written bare
# cannot be written at all, and tune says so when it reads the knob.
_QUOTES_KEPT: dict[Dialect, str] = {
    "ini": "configparser keeps quotes as part of the value",
    "make": "make keeps quotes as part of the value"}


def _bare_reads_back(value: str, dialect: Dialect) -> bool:
    """Whether `value` written without quotes reads back as the same string, both in tune's
    reading (`parse_value`) and in the dialect's own reader."""
    if (not value or value != value.strip() or not value.isprintable()
            or any(q in value for q in "'\"`") or value[0] in "=:"
            or comment_start(value, dialect) < len(value)):
        return False
    ok, back = parse_value(value, dialect)
    if not (ok and isinstance(back, str) and back == value):  # `1.5`, `true`, `null`
        return False
    if dialect == "yaml":
        # No number (a leading digit: ints, floats, dates, 1:30), bool, null or mapping.
        return (_YAML_START.match(value) is not None and value.lower() not in _YAML_WORDS
                and value.lower() not in (".inf", ".nan") and ":" not in value[-1:]
                and ": " not in value)
    if dialect == "ini":
        return True  # configparser takes the rest of the line as it is
    if dialect == "make":
        return "#" not in value and not value.endswith("\\")  # a comment; a continued line
    return _SHELL_WORD.fullmatch(value) is not None  # .env, or a reader tune cannot know


def _render_str(value: str, current: str, dialect: Dialect) -> str:
    """`value` as a string literal in the style of `current`: bare where `current` is bare and
    `value` reads back unchanged without quotes, else in the current quotes, else in `"`."""
    quote = _quote_of(current)
    bare = dialect not in ("python", "toml") and not quote
    if bare and _bare_reads_back(value, dialect):
        return value
    if bare and dialect in _QUOTES_KEPT:
        ok, back = parse_value(value, dialect)
        why = (f"written bare it reads back as {back!r}, not the string {value!r}"
               if ok and not isinstance(back, str) else
               f"{value!r} does not read back as itself written bare (a space at either end, a "
               "comment character, a quote)")
        raise ValueError(f"{why}, and quoting would not help in {dialect_name(dialect)}: "
                         f"{_QUOTES_KEPT[dialect]}")
    # In .env single quotes whatever the line had: a shell expands nothing inside them, so what
    # can be written never depends on how the line was written before.
    if ((quote == "'" or dialect == "env") and "'" not in value
            and "\\" not in value and value.isprintable()):
        return f"'{value}'"
    if dialect == "env" and (any(c in value for c in "$`") or not value.isprintable()):
        # A shell reads `\n` as two characters and expands `$` inside double quotes.
        raise ValueError(f"{value!r} cannot be written in a .env file so that a shell reads it "
                         "back: inside double quotes it would expand `$` and backquotes, and "
                         "single quotes hold no `'`, backslash or control character")
    # JSON string syntax is also valid Python, TOML basic-string and YAML double-quoted syntax.
    return json.dumps(value, ensure_ascii=False)


def render_value(value: Scalar, current: str, dialect: Dialect) -> str:
    """The source text for `value`, in the style of the `current` text on the line. Raises
    ValueError when there is none that reads back as `value` (see `written_value`)."""
    if isinstance(value, bool):
        if dialect == "python":
            return repr(value)
        word = "true" if value else "false"
        if current.isupper():
            return word.upper()
        return word.capitalize() if current[:1].isupper() else word
    if value is None:
        return "None" if dialect == "python" else "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write the non-finite value {value!r}")
        return _render_float(value, dialect)
    return _render_str(value, current, dialect)


def written_value(value: Scalar, current: str, dialect: Dialect) -> str:
    """`render_value`, checked: ValueError unless the text reads back as `value` exactly (the
    ledger records `value`; a file saying anything else would make it lie)."""
    rendered = render_value(value, current, dialect)
    ok, back = parse_value(rendered, dialect)
    if not ok or type(back) is not type(value) or back != value:
        raise ValueError(f"{value!r} does not survive being written as {rendered!r}")
    return rendered
