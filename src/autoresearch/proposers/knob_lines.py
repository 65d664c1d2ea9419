"""Knob lines: finding `NAME = literal` assignments in a file's text, reading and rendering values.

Python files are read as `NAME = literal` / `NAME: type = literal`; any other file (TOML, YAML,
INI, .env, plain text) as `KEY = value` / `KEY: value`. A `# knob: <spec>` comment on the line is
picked up as a marker. Rendering is lossless (`repr` for floats) and keeps each line's style.

In a Python file only a line on which a statement starts is an assignment: a line inside a string
literal (a docstring's `Example: LR = 0.5`) or a call's continuation (`lr=0.1,`) looks like one
but is not, and a knob bound there would edit text the program never runs. What is a statement
is Python's own parser's answer; a file it cannot parse (a syntax error, or syntax newer than
this interpreter knows) is read line by line as before.

Lines end at `\n` only (`\r\n` is one ending), as editors, `grep -n` and git count them, so the
line a message names is the line the user finds. JSON files hold no knob lines at all.
"""

from __future__ import annotations

import ast
import bisect
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Literal

from autoresearch.proposers.knob_space import Scalar, is_number

Dialect = Literal["python", "toml", "plain"]


# ----------------------------------------------------------------------------------------------
# Lines


@lru_cache(maxsize=256)
def dialect_of(path: str | None) -> Dialect:
    """Python syntax for .py files (and when no path is given), `KEY = value` lines otherwise.

    TOML is told apart only because it has no bare strings: a value there is always quoted.
    """
    suffix = PurePosixPath(path).suffix if path is not None else ".py"
    if suffix in (".py", ".pyi", ".pyw"):
        return "python"
    return "toml" if suffix == ".toml" else "plain"


# JSON quotes its keys and has no comments, so none of its lines is a knob line and no marker
# can sit on one; a notebook is JSON, its cells' code lines strings inside it.
JSON_SUFFIXES = frozenset({".json", ".jsonc", ".json5", ".ipynb"})


def is_json(path: str) -> bool:
    """Whether `path` names a JSON file (a notebook included), which tune cannot tune."""
    return PurePosixPath(path).suffix.lower() in JSON_SUFFIXES


def source_lines(text: str) -> list[str]:
    """The lines of `text`, each with its ending, broken at `\n` only (`\r\n` ends one line).

    Not str.splitlines: it also breaks at form feeds, vertical tabs, U+0085, U+2028 and U+2029,
    so a knob's line number disagreed with the editor's, `grep -n`'s and git's. Joined again,
    the lines are `text` byte for byte.
    """
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


# `NAME = v` and `NAME: T = v`; `(?!=)` keeps `x == 1` out. Lines like `lr=0.1,` inside a call
# also match here and are dropped later because `0.1,` is a tuple, not a scalar literal.
_PY_LINE = re.compile(
    r"(?P<head>[ \t\f]*(?P<name>[A-Za-z_]\w*)(?:[ \t]*:[^=]*?)?[ \t]*=(?!=)[ \t]*)(?P<rest>.*)"
)
# TOML / INI / .env `key = v`, YAML `key: v`; dotted and dashed keys (`optim.lr`, `max-steps`);
# Makefile `NAME := v`, `NAME ::= v` and `NAME ?= v` (each sets the value; `+=` appends to it and
# `!=` runs a shell, so neither is a knob). The operator is part of `head`, kept as written.
_PLAIN_LINE = re.compile(
    r"(?P<head>[ \t]*(?P<name>[A-Za-z_][\w.\-]*)[ \t]*(?:::?=|\?=|[=:])(?!=)[ \t]*)"
    r"(?P<rest>.*)"
)
# The forms a knob line may take, for messages about a marker on a line of another form.
KNOB_LINE_FORMS = ("`NAME = value`, `NAME: value`, or in a Makefile `NAME := value` / "
                   "`NAME ?= value` (in Python: `NAME = literal` or `NAME: type = literal`)")
_MARKER = re.compile(r"\bknob:\s*")
_BARE_WORD = re.compile(r"[A-Za-z_][\w.\-/]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "none", "~"}


@dataclass(frozen=True)
class Site:
    """One assignment line, cut so that only `value` is ever replaced."""

    index: int  # 0-based line index
    name: str
    head: str  # indentation, name, annotation and the `=` with its spacing
    value: str  # the value's source text
    tail: str  # spacing, trailing comment and line ending, kept verbatim
    marker: str | None  # the spec of a `# knob: ...` marker in the comment

    @property
    def indented(self) -> bool:
        # A form feed opening a Python line counts for nothing in its indentation.
        return self.head.lstrip("\f")[:1] in (" ", "\t")


def _unquoted(text: str) -> Iterator[tuple[int, str]]:
    """The characters of `text` outside quoted strings, with their index: quotes and what they
    enclose are passed over (inside a quote, a backslash escapes the next character)."""
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        else:
            yield i, c
        i += 1


def _comment_start(rest: str, dialect: Dialect) -> int:
    """Where a trailing `#` comment begins (outside quotes), or len(rest)."""
    for i, c in _unquoted(rest):
        if c == "#" and (dialect == "python" or i == 0 or rest[i - 1] in " \t"):
            # YAML and TOML need a space before `#`; `url: a#b` is a value, not a comment.
            return i
    return len(rest)


def _marker_spec(comment: str) -> str | None:
    m = _MARKER.search(comment)
    if not m:
        return None
    rest = comment[m.end() :]
    # The spec ends at the parenthesis closing its call, so the comment may continue after it.
    depth = 0
    for i, c in _unquoted(rest):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return rest[: i + 1].strip()
    return rest.strip()


# The line breaks of Python's parser: a lone `\r` too, which is no line break of ours.
_PY_NEWLINE = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class PythonLines:
    """Lines of a Python file, numbered as `source_lines` numbers them (0-based)."""

    statements: frozenset[int]  # a statement starts on it
    in_strings: frozenset[int]  # it is inside a string literal that began on an earlier line


@lru_cache(maxsize=64)
def python_lines(text: str) -> PythonLines | None:
    """Where statements and multi-line strings are in Python source; None if it does not parse."""
    try:
        tree = ast.parse(text.removeprefix("\ufeff"))
    except (SyntaxError, ValueError):  # ValueError: a NUL byte
        return None
    parser_starts = [0, *(m.end() for m in _PY_NEWLINE.finditer(text))]
    our_starts = [0]
    for line in source_lines(text):
        our_starts.append(our_starts[-1] + len(line))

    def ours(lineno: int) -> int:  # the parser's 1-based line number, as a source_lines index
        return bisect.bisect_right(our_starts, parser_starts[lineno - 1]) - 1

    statements: set[int] = set()
    in_strings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt):
            statements.add(ours(node.lineno))
        elif isinstance(node, ast.Constant | ast.JoinedStr) and node.end_lineno is not None:
            first = ours(node.lineno)
            in_strings.update(range(first + 1, ours(node.end_lineno) + 1))
    return PythonLines(frozenset(statements), frozenset(in_strings))


@lru_cache(maxsize=64)
def assignment_sites(text: str, dialect: Dialect) -> dict[str, tuple[Site, ...]]:
    """Every assignment-shaped line of a file, by name. Cached: files rarely change between calls."""
    pattern = _PY_LINE if dialect == "python" else _PLAIN_LINE
    parsed = python_lines(text) if dialect == "python" else None
    found: dict[str, list[Site]] = {}
    for index, raw in enumerate(source_lines(text)):
        if parsed is not None and index not in parsed.statements:
            continue
        body = raw.rstrip("\r\n")
        m = pattern.match(body)
        if not m:
            continue
        rest = m.group("rest")
        cut = _comment_start(rest, dialect)
        value = rest[:cut].rstrip()
        if not value:
            continue
        tail = rest[len(value) :] + raw[len(body) :]
        marker = _marker_spec(rest[cut:]) if cut < len(rest) else None
        site = Site(index, m.group("name"), m.group("head"), value, tail, marker)
        found.setdefault(site.name, []).append(site)
    return {name: tuple(sites) for name, sites in found.items()}


def _python_scalar(text: str) -> tuple[bool, Scalar]:
    """(True, value) when `text` is one scalar literal (number, string, bool, None)."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return False, None
    operand = node.operand if isinstance(node, ast.UnaryOp) else node
    if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.USub | ast.UAdd):
        return False, None
    if not isinstance(operand, ast.Constant):
        return False, None
    value = operand.value
    if operand is not node and not is_number(value):
        return False, None
    if value is None or isinstance(value, bool | int | float | str):
        return True, ast.literal_eval(node)
    return False, None


def parse_value(text: str, dialect: Dialect) -> tuple[bool, Scalar]:
    """Read a value's source text; (False, None) when it is not a scalar literal."""
    if dialect == "python":
        return _python_scalar(text)
    low = text.lower()
    if low in ("true", "false"):
        return True, low == "true"
    if low in ("null", "none", "~"):
        return True, None
    ok, value = _python_scalar(text)
    if ok:
        return True, value
    if text[:1] in ("'", '"'):
        return True, text[1:-1] if len(text) > 1 and text[-1] == text[0] else text
    return True, text  # a bare YAML / INI word is a string


def stray_markers(text: str, dialect: Dialect) -> list[tuple[int, str]]:
    """(0-based index, line) of each `# knob: <spec>` comment on a line that is not a knob line
    (`X += 1`, `X != cmd`, a call): the marker is there, but there is no value to rewrite."""
    marked = {s.index for sites in assignment_sites(text, dialect).values() for s in sites
              if s.marker is not None}
    parsed = python_lines(text) if dialect == "python" else None
    in_strings = parsed.in_strings if parsed is not None else frozenset()
    found = []
    for index, line in enumerate(source_lines(text)):
        raw = line.rstrip("\r\n")
        if index in marked or index in in_strings or "knob:" not in raw:
            continue  # a marker inside a string literal is text, not a comment
        cut = _comment_start(raw, dialect)
        spec = _marker_spec(raw[cut:]) if cut < len(raw) else None
        if spec and re.match(r"[a-z]+\(", spec):  # a spec such as choice(4, 8), not prose
            found.append((index, raw.strip()))
    return found


@lru_cache(maxsize=256)
def find_site(text: str, name: str, dialect: Dialect) -> Site | None:
    """The line that holds knob `name`: a marked line first, then a top-level one, then any.

    Discovery and rewriting share this rule, so they always agree on the line. Cached because
    every proposal reads each knob of the same incumbent text several times.
    """
    candidates = [
        s for s in assignment_sites(text, dialect).get(name, ()) if parse_value(s.value, dialect)[0]
    ]
    for preferred in (
        [s for s in candidates if s.marker is not None],
        [s for s in candidates if not s.indented],
        candidates,
    ):
        if preferred:
            return preferred[0]
    return None


# A section header of an INI-like file (`[train]`): the same key under another one is another key.
_SECTION = re.compile(r"[ \t]*\[[^\]\n]+\][ \t]*(?:[#;].*)?")


def overriding_site(text: str, site: Site, dialect: Dialect) -> Site | None:
    """A later top-level assignment to the same name, which sets the value the program uses, so
    that a knob on `site` would change nothing: in a Python file one of a literal (a later
    `X = float(os.environ.get("X", X))` may read `site`'s value, so it is not one); in a plain
    file (YAML, shell, .env, a Makefile) any, since the last one wins there (PyYAML, the shell,
    make), unless a section header (`[train]`) lies between them or it is a Makefile's `?=`
    (set only if unset). TOML refuses a key given twice in one table itself."""
    if site.indented or dialect == "toml":
        return None
    lines = [line.rstrip("\r\n") for line in source_lines(text)]
    for later in assignment_sites(text, dialect).get(site.name, ()):
        if later.index <= site.index or later.indented:
            continue
        if dialect == "python":
            if parse_value(later.value, dialect)[0]:
                return later
        elif not later.head.rstrip().endswith("?=") and not any(
                _SECTION.fullmatch(line) for line in lines[site.index + 1:later.index]):
            return later
    return None


# ----------------------------------------------------------------------------------------------
# Rendering


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


def _render_str(value: str, current: str, dialect: Dialect) -> str:
    quote = _quote_of(current)
    # A bare YAML / INI word stays bare unless it would read back as a bool, null or number.
    bare_ok = _BARE_WORD.fullmatch(value) is not None and value.lower() not in _YAML_WORDS
    if dialect == "plain" and not quote and bare_ok:
        return value
    if quote == "'" and "'" not in value and "\\" not in value and value.isprintable():
        return f"'{value}'"
    # JSON string syntax is also valid Python, TOML basic-string and YAML double-quoted syntax.
    return json.dumps(value, ensure_ascii=False)


def render_value(value: Scalar, current: str, dialect: Dialect) -> str:
    """The source text for `value`, in the style of the `current` text on the line."""
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
