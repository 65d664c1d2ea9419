"""Knob lines: finding `NAME = literal` assignments in a file's text and reading their values.

Python files are read as `NAME = literal` / `NAME: type = literal`; any other file (TOML, YAML,
INI, .env, a Makefile, plain text) as `KEY = value` / `KEY: value`. A `# knob: <spec>` comment on
the line (in an INI file `; knob: <spec>` too) is picked up as a marker. In YAML, INI and TOML a
key is also known by its section path (`finetune.lr`), so a key present under two sections can be
named. Writing a value back onto a line is `knob_render`'s job; markers no knob can be made of
(on another kind of line, after a `;` that starts no comment) are found by `knob_unusable_markers`.

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
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Literal

from autoresearch.proposers.knob_space import Scalar, Unquoted, is_number

# "plain" is any other `KEY = value` file (.properties, .txt): its reader is unknown.
Dialect = Literal["python", "toml", "yaml", "ini", "env", "make", "plain"]
# The dialects whose keys live under sections (`[train]`, or a YAML parent key).
SECTIONED: frozenset[Dialect] = frozenset({"toml", "yaml", "ini"})


_SUFFIX_DIALECTS: dict[str, Dialect] = {
    ".py": "python", ".pyi": "python", ".pyw": "python", ".toml": "toml",
    ".yaml": "yaml", ".yml": "yaml", ".ini": "ini", ".cfg": "ini", ".cnf": "ini", ".conf": "ini",
    ".env": "env", ".mk": "make", ".make": "make"}
_MAKEFILES = frozenset({"makefile", "gnumakefile"})


@lru_cache(maxsize=256)
def dialect_of(path: str | None) -> Dialect:
    """Python syntax for .py files (and when no path is given), `KEY = value` lines otherwise,
    told apart by what their readers make of a value: TOML always quotes a string, YAML reads
    `yes` as a bool, configparser and make keep quotes as part of the value, a shell strips them.
    """
    if path is None:
        return "python"
    name = PurePosixPath(path).name.lower()
    if name in _MAKEFILES:
        return "make"
    if name == ".env" or name.startswith(".env."):
        return "env"
    return _SUFFIX_DIALECTS.get(PurePosixPath(name).suffix, "plain")


def dialect_name(dialect: Dialect) -> str:
    """The kind of file a dialect is, for messages ("an INI file")."""
    return {"python": "a Python file", "toml": "a TOML file", "yaml": "a YAML file",
            "ini": "an INI file", "env": "a .env file", "make": "a Makefile",
            "plain": "this file"}[dialect]


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
_MARKER = re.compile(r"\bknob:\s*")


@dataclass(frozen=True)
class Site:
    """One assignment line, cut so that only `value` is ever replaced."""

    index: int  # 0-based line index
    name: str
    path: str  # the name under its sections (`finetune.lr`); the name itself outside any
    head: str  # indentation, name, annotation and the `=` with its spacing
    value: str  # the value's source text
    tail: str  # spacing, trailing comment and line ending, kept verbatim
    marker: str | None  # the spec of a `# knob: ...` marker in the comment

    @property
    def indented(self) -> bool:
        # A form feed opening a Python line counts for nothing in its indentation.
        return self.head.lstrip("\f")[:1] in (" ", "\t")


def comment_start(rest: str, dialect: Dialect) -> int:
    """Where a trailing `#` comment (in an INI file `;` too) begins (outside quotes), or
    len(rest)."""
    starts = "#;" if dialect == "ini" else "#"
    for i, c in Unquoted(rest):
        if c in starts and (dialect == "python" or i == 0 or rest[i - 1] in " \t"):
            # YAML and TOML need a space before `#`; `url: a#b` is a value, not a comment.
            # So do configparser's inline comments (`inline_comment_prefixes`).
            return i
    return len(rest)


def marker_spec(comment: str) -> str | None:
    m = _MARKER.search(comment)
    if not m:
        return None
    rest = comment[m.end() :]
    # The spec ends at the parenthesis closing its call, so the comment may continue after it.
    depth = 0
    for i, c in Unquoted(rest):
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


# A section header of an INI-like file (`[train]`) or a TOML table (`[a.b]`, `[[runs]]`): the
# same key under another one is another key.
_SECTION = re.compile(r"[ \t]*\[\[?(?P<name>[^\]\n]+?)\]\]?[ \t]*(?:[#;].*)?")
# A YAML mapping key, with or without a value after it (`train:`, `  lr: 0.1`).
_YAML_KEY = re.compile(r"(?P<indent> *)(?P<key>[A-Za-z_][\w.\-]*)[ \t]*:(?:[ \t]|$)")


def _section_prefixes(lines: list[str], dialect: Dialect) -> list[str]:
    """For each line, the sections it lies under as a path prefix ("train." or "")."""
    if dialect not in SECTIONED:
        return [""] * len(lines)
    if dialect == "yaml":
        return _yaml_prefixes(lines)
    prefixes = []
    prefix = ""
    for line in lines:
        header = _SECTION.fullmatch(line.rstrip("\r\n"))
        if header:
            name = header.group("name")
            parts = name.split(".") if dialect == "toml" else [name]  # TOML `[a . b]` is a.b
            prefix = ".".join(part.strip().strip("\"'") for part in parts) + "."
        prefixes.append(prefix)
    return prefixes


def _yaml_prefixes(lines: list[str]) -> list[str]:
    """A YAML line's path prefix: the keys without a value above it, by indentation."""
    stack: list[tuple[int, str]] = []  # (indentation, key) of the open parent keys
    prefixes = []
    for line in lines:
        body = line.rstrip("\r\n")
        key = _YAML_KEY.match(body)
        indent = len(key.group("indent")) if key else 0
        while key and stack and stack[-1][0] >= indent:
            stack.pop()
        prefixes.append("".join(f"{k}." for _, k in stack))
        if key:
            rest = body[key.end():]
            if not rest[:comment_start(rest, "yaml")].strip():
                stack.append((indent, key.group("key")))
    return prefixes


@lru_cache(maxsize=64)
def assignment_sites(text: str, dialect: Dialect) -> dict[str, tuple[Site, ...]]:
    """Every assignment-shaped line of a file, by name. Cached: files rarely change between calls."""
    pattern = _PY_LINE if dialect == "python" else _PLAIN_LINE
    parsed = python_lines(text) if dialect == "python" else None
    found: dict[str, list[Site]] = {}
    lines = source_lines(text)
    prefixes = _section_prefixes(lines, dialect)
    for index, raw in enumerate(lines):
        if parsed is not None and index not in parsed.statements:
            continue
        body = raw.rstrip("\r\n")
        m = pattern.match(body)
        if not m:
            continue
        rest = m.group("rest")
        cut = comment_start(rest, dialect)
        value = rest[:cut].rstrip()
        if not value:
            continue
        tail = rest[len(value) :] + raw[len(body) :]
        marker = marker_spec(rest[cut:]) if cut < len(rest) else None
        name = m.group("name")
        site = Site(index, name, prefixes[index] + name, m.group("head"), value, tail, marker)
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


def _matching_sites(text: str, name: str, dialect: Dialect) -> list[Site]:
    """The literal lines `name` may mean: in a sectioned file those whose path is `name`
    (`finetune.lr`, or a top-level `lr`) and the marked ones with key `name` when there are
    any, else every one whose key is `name`."""
    literal = [s for sites in assignment_sites(text, dialect).values() for s in sites
               if parse_value(s.value, dialect)[0]]
    by_key = [s for s in literal if s.name == name]
    if dialect not in SECTIONED:
        return by_key
    # A marker on a nested `lr` still wins over a top-level `lr`, as it did before paths.
    exact = [s for s in literal if s.path == name or (s.name == name and s.marker is not None)]
    return exact or by_key


@lru_cache(maxsize=256)
def find_site(text: str, name: str, dialect: Dialect) -> Site | None:
    """The line that holds knob `name`: a marked line first, then the one whose section path is
    `name`, then a top-level one, then any (`ambiguous_sites` says when that choice is blind).

    Discovery and rewriting share this rule, so they always agree on the line. Cached because
    every proposal reads each knob of the same incumbent text several times.
    """
    candidates = _matching_sites(text, name, dialect)
    for preferred in (
        [s for s in candidates if s.marker is not None],
        [s for s in candidates if not s.indented],
        candidates,
    ):
        if preferred:
            return preferred[0]
    return None


def ambiguous_sites(text: str, name: str, dialect: Dialect) -> list[Site]:
    """The lines `find_site` would choose among blindly: key `name` under two or more sections
    (YAML `train: lr` and `finetune: lr`, INI `[a] lr` and `[b] lr`), none of them marked and
    none at the path `name` itself; [] when the line is clear."""
    if dialect not in SECTIONED:
        return []
    candidates = _matching_sites(text, name, dialect)
    if any(s.marker is not None or s.path == name for s in candidates):
        return []
    return candidates if len({s.path for s in candidates}) > 1 else []


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
