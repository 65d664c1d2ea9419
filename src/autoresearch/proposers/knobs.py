"""Knobs: named literal values in in-scope files that the offline `tune` proposer may set.

A knob is declared either in the contract (`[knobs] "train.py:LR" = "log(1e-4, 1e-1)"`) or by a
marker comment on its own line (`LR = 0.02  # knob: log(1e-3, 1e-1)`). Python files are read as
`NAME = literal` / `NAME: type = literal`; any other file (TOML, YAML, INI, .env, plain text) as
`KEY = value` / `KEY: value`, so repositories that are not Python can be tuned too.

This module is pure text handling and deliberately does not import optuna: config.py imports
`parse_knob_spec` to validate the contract, and `autoresearch check` should stay fast.

Values are *snapped* to a canonical, compactly rendered form before they are written
(`KnobSpace.snap`), and rendering is lossless (`repr` for floats), so the value recorded in the
ledger is exactly the value the file contains.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Literal

from autoresearch.errors import ConfigError
from autoresearch.globs import matches

Scalar = bool | int | float | str | None
KnobKind = Literal["log", "float", "int", "logint", "choice"]
Dialect = Literal["python", "toml", "plain"]

_KINDS: dict[str, KnobKind] = {k: k for k in ("log", "float", "int", "logint", "choice")}
_KINDS_HELP = (
    "log(lo, hi), float(lo, hi[, step]), int(lo, hi[, step]), logint(lo, hi) or choice(a, b, ...)"
)
# Marker files larger than this are data, not code; scanning them would cost every experiment.
_MAX_SCAN_BYTES = 2_000_000
_CONFIG_WHERE = "autoresearch.toml → knobs"


class KnobError(ConfigError):
    """A knob cannot be found, parsed or edited: the contract or a marker needs fixing."""


# ----------------------------------------------------------------------------------------------
# Spaces


def _is_number(value: object) -> bool:
    # bool is an int subclass, but True is never a meaningful learning rate.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decimals(x: float) -> int:
    """Digits after the point in the shortest repr of x (0.125 → 3, 1e-05 → 5, 300.0 → 0)."""
    exponent = Decimal(repr(float(x))).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _same(a: Scalar, b: Scalar) -> bool:
    """Equality that tells True from 1 (optuna's categorical lookup cannot)."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return type(a) is type(b) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return a == b


@dataclass(frozen=True)
class KnobSpace:
    """Where a knob's value may go. Numeric bounds are inclusive."""

    kind: KnobKind
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    choices: tuple[Scalar, ...] = ()

    def __str__(self) -> str:
        if self.kind == "choice":
            return f"choice({', '.join(repr(c) for c in self.choices)})"
        args = [repr(self.low), repr(self.high)]
        if self.step is not None:
            args.append(repr(self.step))
        return f"{self.kind}({', '.join(args)})"

    @property
    def numeric(self) -> bool:
        return self.kind != "choice"

    @property
    def integer(self) -> bool:
        return self.kind in ("int", "logint")

    def index(self, value: Scalar) -> int | None:
        """The position of `value` among the choices, or None."""
        for i, choice in enumerate(self.choices):
            if _same(value, choice):
                return i
        return None

    def accepts_type(self, value: object) -> bool:
        """Whether a value of this type could be written to the knob's line at all."""
        return _is_number(value) if self.numeric else True

    def contains(self, value: Scalar) -> bool:
        """Whether `value` lies in the space (on the grid, for stepped and integer spaces)."""
        if self.kind == "choice":
            return self.index(value) is not None
        if not _is_number(value):
            return False
        assert isinstance(value, int | float)
        if not self.low <= value <= self.high:
            return False
        if self.integer:
            step = int(self.step or 1)
            return float(value).is_integer() and (int(value) - int(self.low)) % step == 0
        if self.step is not None:
            k = (value - self.low) / self.step
            return abs(k - round(k)) < 1e-8
        return True

    def snap(self, value: Scalar) -> Scalar:
        """The canonical value nearest `value`: clamped, on the grid, compactly representable.

        Unstepped floats keep 4 significant digits on log scales and 3-4 digits of the range on
        linear ones: enough for tuning, and the rendered line stays readable.
        Snapping is idempotent, so a value read back from the ledger snaps to itself.
        """
        if self.kind == "choice":
            i = self.index(value)
            if i is None:
                raise ValueError(f"{value!r} is not one of {str(self)}")
            return self.choices[i]
        if not _is_number(value):
            raise ValueError(f"{value!r} is not a number, but the knob's space is {self}")
        assert isinstance(value, int | float)
        v = min(max(float(value), self.low), self.high)
        if self.kind == "logint":
            return min(max(round(v), int(self.low)), int(self.high))
        if self.kind == "int":
            step = int(self.step or 1)
            k = round((v - self.low) / step)
            return min(max(int(self.low) + k * step, int(self.low)), int(self.high))
        if self.step is not None:
            k = min(max(round((v - self.low) / self.step), 0), self._steps())
            digits = max(_decimals(self.low), _decimals(self.step))
            return round(self.low + k * self.step, digits)
        if self.kind == "log":
            snapped = float(f"{v:.4g}")
        else:
            # A grid of 1,000 to 10,000 points across the range: 4 digits where it matters.
            snapped = round(v, 3 - math.floor(math.log10(self.high - self.low)))
        return min(max(snapped, self.low), self.high)

    def _steps(self) -> int:
        return round((self.high - self.low) / (self.step or 1))

    def size(self) -> int | None:
        """How many values the space holds, or None when it is continuous."""
        if self.kind == "choice":
            return len(self.choices)
        if self.kind == "logint":
            return int(self.high) - int(self.low) + 1
        if self.kind == "int" or self.step is not None:
            return self._steps() + 1
        return None

    def values(self) -> Iterator[Scalar]:
        """Every value of a discrete space, in order (nothing for continuous spaces)."""
        if self.kind == "choice":
            yield from self.choices
        elif self.integer:
            yield from range(int(self.low), int(self.high) + 1, int(self.step or 1))
        elif self.step is not None:
            for k in range(self._steps() + 1):
                yield self.snap(self.low + k * self.step)


def _arg_value(node: ast.expr, spec: str) -> Scalar:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise ValueError(
            f"{ast.unparse(node)!r} in {spec!r} is not a literal: use numbers, quoted strings, "
            'True, False or None (e.g. choice("adamw", "sgd"))'
        ) from None
    if value is None or isinstance(value, bool | int | float | str):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{spec!r}: values must be finite, not {value!r}")
        return value
    raise ValueError(f"{ast.unparse(node)!r} in {spec!r} is not a single number, string or bool")


def _numbers(kind: str, args: list[Scalar], spec: str, *, integer: bool) -> list[float]:
    what = "integers" if integer else "numbers"
    for a in args:
        if not _is_number(a) or (integer and not isinstance(a, int)):
            raise ValueError(f"{spec!r}: {kind}(...) takes {what}, got {a!r}")
    return [a for a in args if isinstance(a, int | float)]


def parse_knob_spec(spec: str) -> KnobSpace:
    """Parse `log(lo, hi)`, `float(lo, hi[, step])`, `int(lo, hi[, step])`, `logint(lo, hi)`
    or `choice(a, b, ...)`; raise ValueError saying exactly what is wrong."""
    text = spec.strip()
    try:
        call = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ValueError(f"{spec!r} is not of the form kind(args): use {_KINDS_HELP}") from None
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise ValueError(f"{spec!r} is not of the form kind(args): use {_KINDS_HELP}")
    kind = _KINDS.get(call.func.id)
    if kind is None:
        raise ValueError(f"unknown knob kind {call.func.id!r} in {spec!r}: use {_KINDS_HELP}")
    if call.keywords:
        raise ValueError(f"{spec!r}: arguments are positional only, e.g. float(0, 1, 0.1)")
    args = [_arg_value(a, spec) for a in call.args]

    if kind == "choice":
        if not args:
            raise ValueError(f"{spec!r}: choice(...) needs at least one value")
        for i, a in enumerate(args):
            if any(_same(a, b) for b in args[:i]):
                raise ValueError(f"{spec!r}: {a!r} appears twice (1, 1.0 and True count as equal)")
            if isinstance(a, bool) and any(_is_number(b) and b in (0, 1) for b in args):
                raise ValueError(f"{spec!r}: mixing {a!r} with 0/1 is ambiguous; pick one type")
        return KnobSpace("choice", choices=tuple(args))

    max_args = 3 if kind in ("float", "int") else 2
    if not 2 <= len(args) <= max_args:
        shape = f"{kind}(lo, hi, step)" if max_args == 3 else f"{kind}(lo, hi)"
        raise ValueError(f"{spec!r}: expected {shape}, got {len(args)} argument(s)")
    nums = _numbers(kind, args, spec, integer=kind in ("int", "logint"))
    lo, hi = nums[0], nums[1]
    step = nums[2] if len(nums) == 3 else None
    if lo >= hi:
        raise ValueError(f"{spec!r}: lo ({lo!r}) must be smaller than hi ({hi!r})")
    if kind in ("log", "logint") and lo <= 0:
        raise ValueError(f"{spec!r}: a log scale needs lo > 0, got {lo!r}")
    if step is not None:
        if step <= 0:
            raise ValueError(f"{spec!r}: step must be positive, got {step!r}")
        n = (hi - lo) / step
        if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
            raise ValueError(
                f"{spec!r}: hi - lo ({hi - lo!r}) is not a multiple of step {step!r}; "
                "adjust hi so the grid ends on it"
            )
    if kind in ("int", "logint"):
        return KnobSpace(kind, low=int(lo), high=int(hi), step=None if step is None else int(step))
    return KnobSpace(
        kind, low=float(lo), high=float(hi), step=None if step is None else float(step)
    )


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


# `NAME = v` and `NAME: T = v`; `(?!=)` keeps `x == 1` out. Lines like `lr=0.1,` inside a call
# also match here and are dropped later because `0.1,` is a tuple, not a scalar literal.
_PY_LINE = re.compile(
    r"(?P<head>[ \t]*(?P<name>[A-Za-z_]\w*)(?:[ \t]*:[^=]*?)?[ \t]*=(?!=)[ \t]*)(?P<rest>.*)"
)
# TOML / INI / .env `key = v`, YAML `key: v`; dotted and dashed keys (`optim.lr`, `max-steps`).
_PLAIN_LINE = re.compile(
    r"(?P<head>[ \t]*(?P<name>[A-Za-z_][\w.\-]*)[ \t]*[=:](?!=)[ \t]*)(?P<rest>.*)"
)
_MARKER = re.compile(r"\bknob:\s*")
_BARE_WORD = re.compile(r"[A-Za-z_][\w.\-/]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "none", "~"}


@dataclass(frozen=True)
class _Site:
    """One assignment line, cut so that only `value` is ever replaced."""

    index: int  # 0-based line index
    name: str
    head: str  # indentation, name, annotation and the `=` with its spacing
    value: str  # the value's source text
    tail: str  # spacing, trailing comment and line ending, kept verbatim
    marker: str | None  # the spec of a `# knob: ...` marker in the comment

    @property
    def indented(self) -> bool:
        return self.head[:1] in (" ", "\t")


def _comment_start(rest: str, dialect: Dialect) -> int:
    """Where a trailing `#` comment begins (outside quotes), or len(rest)."""
    quote = ""
    i = 0
    while i < len(rest):
        c = rest[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "#" and (dialect == "python" or i == 0 or rest[i - 1] in " \t"):
            # YAML and TOML need a space before `#`; `url: a#b` is a value, not a comment.
            return i
        i += 1
    return len(rest)


def _marker_spec(comment: str) -> str | None:
    m = _MARKER.search(comment)
    if not m:
        return None
    rest = comment[m.end() :]
    # The spec ends at the parenthesis closing its call, so the comment may continue after it.
    depth, quote, i = 0, "", 0
    while i < len(rest):
        c = rest[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return rest[: i + 1].strip()
        i += 1
    return rest.strip()


@lru_cache(maxsize=64)
def _sites(text: str, dialect: Dialect) -> dict[str, tuple[_Site, ...]]:
    """Every assignment-shaped line of a file, by name. Cached: files rarely change between calls."""
    pattern = _PY_LINE if dialect == "python" else _PLAIN_LINE
    found: dict[str, list[_Site]] = {}
    for index, raw in enumerate(text.splitlines(keepends=True)):
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
        site = _Site(index, m.group("name"), m.group("head"), value, tail, marker)
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
    if operand is not node and not _is_number(value):
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


@lru_cache(maxsize=256)
def _find_site(text: str, name: str, dialect: Dialect) -> _Site | None:
    """The line that holds knob `name`: a marked line first, then a top-level one, then any.

    Discovery and rewriting share this rule, so they always agree on the line. Cached because
    every proposal reads each knob of the same incumbent text several times.
    """
    candidates = [
        s for s in _sites(text, dialect).get(name, ()) if parse_value(s.value, dialect)[0]
    ]
    for preferred in (
        [s for s in candidates if s.marker is not None],
        [s for s in candidates if not s.indented],
        candidates,
    ):
        if preferred:
            return preferred[0]
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


# ----------------------------------------------------------------------------------------------
# Knobs


@dataclass(frozen=True)
class Knob:
    """One tunable value: which file, which name, its space, and the 1-based line it sits on."""

    file: str
    name: str
    space: KnobSpace
    line: int
    source: Literal["config", "marker"] = "config"

    @property
    def key(self) -> str:
        """The key params are recorded under: "file:NAME"."""
        return f"{self.file}:{self.name}"

    @property
    def dialect(self) -> Dialect:
        return dialect_of(self.file)


def _locate(text: str, knob: Knob) -> _Site:
    site = _find_site(text, knob.name, knob.dialect)
    if site is None:
        raise KnobError(
            f"knob {knob.key!r}: no line assigning a literal to {knob.name} in {knob.file}",
            where=knob.file,
            fix=_expected_line(knob.name, knob.file),
        )
    return site


def read_value(text: str, knob: Knob) -> Scalar:
    """The knob's current value in `text` (a file's content)."""
    return parse_value(_locate(text, knob).value, knob.dialect)[1]


def read_source(text: str, knob: Knob) -> str:
    """The knob's current value exactly as written (for messages such as `0.02 → 0.0315`)."""
    return _locate(text, knob).value


def rewrite(text: str, assignments: Mapping[str, Scalar], *, path: str | None = None) -> str:
    """`text` with the value of each `NAME` in `assignments` replaced, and nothing else changed.

    Indentation, annotations, spacing, trailing comments and line endings are kept; strings keep
    their quote style. `path` picks the syntax (Python for .py or when omitted). Raises
    ValueError when a value would not read back identically (e.g. a NaN).
    """
    dialect = dialect_of(path)
    lines = text.splitlines(keepends=True)
    for name, value in assignments.items():
        site = _find_site(text, name, dialect)
        if site is None:
            raise KnobError(
                f"no line assigning a literal to {name} in {path or 'the file'}",
                where=path,
                fix=_expected_line(name, path or "x.py"),
            )
        rendered = render_value(value, site.value, dialect)
        ok, back = parse_value(rendered, dialect)
        if not ok or type(back) is not type(value) or back != value:
            # The ledger records `value`; a file saying anything else would make it lie.
            raise ValueError(f"{value!r} does not survive being written as {rendered!r}")
        lines[site.index] = site.head + rendered + site.tail
    return "".join(lines)


def _expected_line(name: str, file: str) -> str:
    if dialect_of(file) == "python":
        return (
            f"expected a line such as `{name} = 0.01` or `{name}: float = 0.01` "
            "(a single literal on the right); check the name's spelling"
        )
    return f"expected a line such as `{name} = 0.01` or `{name}: 0.01`; check the name's spelling"


def _normalize(file: str, key: str) -> str:
    path = PurePosixPath(file.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not file.strip():
        raise KnobError(
            f"knob {key!r}: {file!r} is not a repo-relative path",
            where=_CONFIG_WHERE,
            fix='name the file relative to the repository root, e.g. "train.py:LR"',
        )
    return path.as_posix().removeprefix("./")


def read_text(path: Path) -> str:
    """A file's exact text. Not Path.read_text(): universal newlines would turn CRLF into LF."""
    return path.read_bytes().decode("utf-8")


def _check_value(knob: Knob, site: _Site, where: str) -> None:
    value = parse_value(site.value, knob.dialect)[1]
    if not knob.space.accepts_type(value):
        raise KnobError(
            f"knob {knob.key!r}: the current value {site.value} is not a number, "
            f"but its space {knob.space} is numeric",
            where=where,
            fix="point the knob at a numeric assignment, or use choice(...) for other values",
        )


def _marker_knobs(root: Path, files: Sequence[str]) -> dict[str, Knob]:
    found: dict[str, Knob] = {}
    for rel in files:
        path = root / rel
        try:
            if not path.is_file() or path.stat().st_size > _MAX_SCAN_BYTES:
                continue
            text = read_text(path)
        except (OSError, UnicodeDecodeError):
            continue  # binary or unreadable files cannot hold markers
        if "knob:" not in text:
            continue
        dialect = dialect_of(rel)
        for name, sites in _sites(text, dialect).items():
            for site in sites:
                if site.marker is None:
                    continue
                where = f"{rel}:{site.index + 1}"
                try:
                    space = parse_knob_spec(site.marker)
                except ValueError as exc:
                    raise KnobError(
                        f"knob marker for {name}: {exc}", where=where, fix=f"use {_KINDS_HELP}"
                    ) from None
                if not parse_value(site.value, dialect)[0]:
                    raise KnobError(
                        f"knob marker on {name}, whose value {site.value} is not a single literal",
                        where=where,
                        fix=_expected_line(name, rel),
                    )
                knob = Knob(rel, name, space, site.index + 1, "marker")
                if knob.key in found:
                    raise KnobError(
                        f"knob {knob.key!r} is marked twice (lines {found[knob.key].line} and "
                        f"{knob.line})",
                        where=where,
                        fix="keep the marker on one of the lines",
                    )
                _check_value(knob, site, where)
                found[knob.key] = knob
    return found


def discover_knobs(
    root: Path,
    config_knobs: Mapping[str, str],
    scope_files: Sequence[str],
    *,
    protected: Sequence[str] = (),
) -> list[Knob]:
    """The knobs under `root`: those declared in the contract plus `# knob:` markers.

    `scope_files` are the repo-relative files the proposer may change (globs are accepted for
    the scope check; only concrete files are scanned for markers). A contract entry overrides a
    marker on the same line. Anything that cannot work raises KnobError saying how to fix it.
    """
    knobs = _marker_knobs(root, scope_files)
    scope_set = set(scope_files)
    for key, spec in config_knobs.items():
        file, sep, name = key.rpartition(":")
        if not sep or not file or not name:
            raise KnobError(
                f'knob key {key!r} must be "file:NAME"',
                where=_CONFIG_WHERE,
                fix='write e.g. "train.py:LEARNING_RATE" = "log(1e-4, 1e-1)"',
            )
        file = _normalize(file, key)
        where = f'{_CONFIG_WHERE}."{key}"'
        try:
            space = parse_knob_spec(spec)
        except ValueError as exc:
            raise KnobError(f"knob {key!r}: {exc}", where=where, fix=f"use {_KINDS_HELP}") from None
        if file not in scope_set and not matches(file, scope_files):
            raise KnobError(
                f"knob {key!r} is in {file}, which is outside the scope (the harness would refuse "
                "the edit)",
                where=where,
                fix=f'add "{file}" to scope in autoresearch.toml, or remove the knob',
            )
        if matches(file, protected):
            raise KnobError(
                f"knob {key!r} is in {file}, which is protected",
                where=where,
                fix=f"remove {file} from protected, or remove the knob",
            )
        path = root / file
        if not path.is_file():
            raise KnobError(
                f"knob {key!r}: {file} does not exist",
                where=where,
                fix="check the file name (it is relative to the repository root)",
            )
        try:
            text = read_text(path)
        except UnicodeDecodeError:
            raise KnobError(f"knob {key!r}: {file} is not UTF-8 text", where=where) from None
        site = _find_site(text, name, dialect_of(file))
        if site is None:
            raise KnobError(
                f"knob {key!r}: found no line assigning a literal to {name} in {file}",
                where=where,
                fix=_expected_line(name, file),
            )
        knob = Knob(file, name, space, site.index + 1, "config")
        _check_value(knob, site, where)
        knobs[knob.key] = knob
    return sorted(knobs.values(), key=lambda k: (k.file, k.line, k.name))
