"""Knob search spaces: parsing `log(lo, hi)`-style specs into a KnobSpace, and snapping values.

This module is pure text handling and deliberately does not import optuna: config.py imports
`parse_knob_spec` to validate the contract, and `autoresearch check` should stay fast.

Values are *snapped* to a canonical, compactly rendered form before they are written
(`KnobSpace.snap`), so the value recorded in the ledger is exactly the value the file contains.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Scalar = bool | int | float | str | None
KnobKind = Literal["log", "float", "int", "logint", "choice"]

_KINDS: dict[str, KnobKind] = {k: k for k in ("log", "float", "int", "logint", "choice")}
KINDS_HELP = (
    "log(lo, hi), float(lo, hi[, step]), int(lo, hi[, step]), logint(lo, hi) or choice(a, b, ...)"
)
# A choice written without quotes (`choice(-O0, -O1)`, `choice(adamw, sgd)`): a run of anything
# but spaces, quotes, commas, brackets, backslashes and `#`, that is no Python literal (a
# number stays a number: `choice(1, 2.5)`).
_BARE_CHOICE = re.compile(r"[^\s'\"`,()\[\]{}\\#]+")
# Bare words each file type reads differently (YAML's `yes` is a bool, INI's a string): the
# user must say which they mean. `inf`/`nan` are no finite number, but look like one.
_UNCLEAR_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "null", "none", "~",
                            "inf", "+inf", "-inf", "nan", "+nan", "-nan"})
_CALL = re.compile(r"(?P<kind>[A-Za-z_]\w*)(?:\s|\\\n)*\((?P<args>.*)\)", re.DOTALL)


def is_number(value: object) -> bool:
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
        return is_number(value) if self.numeric else True

    def contains(self, value: Scalar) -> bool:
        """Whether `value` lies in the space (on the grid, for stepped and integer spaces)."""
        if self.kind == "choice":
            return self.index(value) is not None
        if not is_number(value):
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

    def why_outside(self, value: Scalar) -> str | None:
        """How `value` falls outside the space ("above 0.01", "none of its choices"), or None
        when it lies inside."""
        if self.contains(value):
            return None
        if self.kind == "choice":
            return "none of its choices"
        if not is_number(value):
            return "not a number"
        assert isinstance(value, int | float)
        if value < self.low:
            return f"below its lowest value {self.low!r}"
        if value > self.high:
            return f"above its highest value {self.high!r}"
        if self.integer and not float(value).is_integer():
            return "not a whole number"
        return f"off its grid of step {self.step!r}"

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
        if not is_number(value):
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


class Unquoted:
    """The characters of a text outside quoted strings, with their index: quotes and what they
    enclose are passed over (inside a quote, a backslash escapes the next character). After the
    walk, `left_open` says whether the text ended inside a quote."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.left_open = False

    def __iter__(self) -> Iterator[tuple[int, str]]:
        quote = ""
        i = 0
        while i < len(self.text):
            c = self.text[i]
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
        self.left_open = bool(quote)


def _split_args(args: str) -> list[str] | None:
    """`args` split at its top-level commas (not inside quotes or brackets), each stripped;
    None when a quote or bracket is left open. A trailing comma is allowed, as in Python."""
    parts: list[str] = []
    depth = 0
    start = 0
    scan = Unquoted(args)
    for i, c in scan:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif c == "," and depth == 0:
            parts.append(args[start:i].strip())
            start = i + 1
    if scan.left_open or depth:
        return None
    last = args[start:].strip()
    if last or not parts:
        parts.append(last)
    return [] if parts == [""] else parts


def _choice_value(arg: str, spec: str) -> Scalar:
    """One choice: a Python literal (a number stays a number), or else a bare word (a string)."""
    if not arg:
        raise ValueError(f"{spec!r}: an empty value between two commas")
    try:
        node: ast.expr | None = ast.parse(arg, mode="eval").body
    except SyntaxError:
        node = None  # `-O0`, `/usr/bin/gcc`: no Python at all, perhaps a bare word
    if node is not None:
        try:
            ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError):
            pass  # `adamw`, `-O0`: a name, not a literal
        else:
            return _arg_value(node, spec)  # says why a list or a complex number is no choice
    if not _BARE_CHOICE.fullmatch(arg):
        raise ValueError(
            f"{arg!r} in {spec!r} is neither a literal nor a bare word: quote it (e.g. "
            'choice("a b", "c")), or write numbers, True, False or None')
    if arg.lower() in _UNCLEAR_WORDS:
        raise ValueError(
            f"{spec!r}: the bare word {arg} could mean a bool, None, a number or a string: write "
            f'True, False or None for those, or quote it for the string ("{arg}")')
    if re.fullmatch(r"[A-Za-z_]\w*=.*", arg):
        raise ValueError(f"{spec!r}: arguments are positional only; if {arg} is a value, quote "
                         f'it: choice("{arg}", ...)')
    return arg


def _choice_args(args: str, spec: str) -> list[Scalar]:
    parts = _split_args(args)
    if parts is None:
        raise ValueError(f"{spec!r} is not of the form choice(a, b, ...): a quote or bracket "
                         "is left open, or closed without being opened")
    return [_choice_value(part, spec) for part in parts]


def _numbers(kind: str, args: list[Scalar], spec: str, *, integer: bool) -> list[float]:
    what = "integers" if integer else "numbers"
    for a in args:
        if not is_number(a) or (integer and not isinstance(a, int)):
            raise ValueError(f"{spec!r}: {kind}(...) takes {what}, got {a!r}")
    return [a for a in args if isinstance(a, int | float)]


def _choice_space(args: list[Scalar], spec: str) -> KnobSpace:
    if not args:
        raise ValueError(f"{spec!r}: choice(...) needs at least one value")
    for i, a in enumerate(args):
        if any(_same(a, b) for b in args[:i]):
            raise ValueError(f"{spec!r}: {a!r} appears twice (1, 1.0 and True count as equal)")
        if isinstance(a, bool) and any(is_number(b) and b in (0, 1) for b in args):
            raise ValueError(f"{spec!r}: mixing {a!r} with 0/1 is ambiguous; pick one type")
    return KnobSpace("choice", choices=tuple(args))


def parse_knob_spec(spec: str) -> KnobSpace:
    """Parse `log(lo, hi)`, `float(lo, hi[, step])`, `int(lo, hi[, step])`, `logint(lo, hi)`
    or `choice(a, b, ...)`; raise ValueError saying exactly what is wrong. A choice is a Python
    literal (number, quoted string, True, False, None) or a bare word (`-O3`, `adamw`)."""
    text = spec.strip()
    choice = _CALL.fullmatch(text)
    if choice is not None and choice.group("kind") == "choice":
        return _choice_space(_choice_args(choice.group("args"), spec), spec)
    try:
        call = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ValueError(f"{spec!r} is not of the form kind(args): use {KINDS_HELP}") from None
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise ValueError(f"{spec!r} is not of the form kind(args): use {KINDS_HELP}")
    kind = _KINDS.get(call.func.id)
    if kind is None:
        raise ValueError(f"unknown knob kind {call.func.id!r} in {spec!r}: use {KINDS_HELP}")
    if call.keywords:
        raise ValueError(f"{spec!r}: arguments are positional only, e.g. float(0, 1, 0.1)")
    args = [_arg_value(a, spec) for a in call.args]

    if kind == "choice":  # a form of call _CALL does not take: literals only, as before
        return _choice_space(args, spec)

    max_args = 3 if kind in ("float", "int") else 2
    if not 2 <= len(args) <= max_args:
        shape = f"{kind}(lo, hi, step)" if max_args == 3 else f"{kind}(lo, hi)"
        raise ValueError(f"{spec!r}: expected {shape}, got {len(args)} argument(s)")
    nums = _numbers(kind, args, spec, integer=kind in ("int", "logint"))
    lo, hi = nums[0], nums[1]
    step = nums[2] if len(nums) == 3 else None
    if lo >= hi:
        raise ValueError(f"{spec!r}: lo ({lo!r}) must be smaller than hi ({hi!r})")
    try:
        width = float(hi) - float(lo)
    except OverflowError:  # an int literal beyond any float
        width = math.inf
    if not math.isfinite(width):
        # float(-1e308, 1e308): each bound is finite, their distance is not, and every value
        # snapped to the range's grid overflowed (a traceback at the first proposal).
        raise ValueError(f"{spec!r}: the range from lo to hi is wider than a float can hold; "
                         "give bounds the knob's values could really take")
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
