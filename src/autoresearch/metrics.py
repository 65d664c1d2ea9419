"""Read numbers from a run's output.

Every format follows the same rule: the last occurrence of a name wins, because training
scripts print running values and a final summary, and the summary is what counts. Lines of
any other shape are ignored. Non-finite values (nan, inf) are returned as floats; deciding
what they mean (usually a crash) is the caller's job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal, get_args

__all__ = ["MetricFormat", "format_metric_help", "parse_metric_value", "parse_metrics",
           "printed_values", "to_float"]

MetricFormat = Literal["kv", "metric-line", "json", "regex"]
METRIC_FORMATS: tuple[str, ...] = get_args(MetricFormat)

_NAME = r"[A-Za-z_][\w.\-/]*"
# Stricter than float(): that also accepts "1_000" and surrounding whitespace. Digits grouped
# by thousands separators (`12,345 tok/s`, `1,234.5`, as Python's f"{x:,}" prints them) are one
# number: read as 12345 and 1234.5, never as 12 or 1. A comma followed by other than exactly
# three digits (`0,5`, `1,2345`) is no thousands separator, and such text is not a number.
_GROUPED = r"\d{1,3}(?:,\d{3})+(?!\d|,\d)(?:\.\d*)?"
_NUMBER = rf"[-+]?(?:(?:{_GROUPED}|\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf(?:inity)?)"
_NUMBER_RE = re.compile(_NUMBER, re.IGNORECASE)
_KV_RE = re.compile(rf"^\s*({_NAME})\s*:\s*({_NUMBER})\s*$", re.IGNORECASE)
_METRIC_LINE_RE = re.compile(r"^\s*METRIC\s+(.*)$")
_PAIR_RE = re.compile(rf"^({_NAME})=({_NUMBER})$", re.IGNORECASE)


def parse_metric_value(text: str) -> float | None:
    """A float if ``text`` is exactly a number (incl. nan/inf/scientific, and digits grouped by
    thousands separators), else None."""
    text = text.strip()
    return to_float(text) if _NUMBER_RE.fullmatch(text) else None


def to_float(number: str) -> float:
    """The value of text that matched a number pattern here: thousands separators dropped."""
    return float(number.replace(",", ""))


# A terminal's control sequences: colour (CSI ... m), titles and links (OSC ... BEL/ST), and the
# other two-character escapes. A script that forces colour prints `\x1b[32mval_loss: 1.2\x1b[0m`.
_TERMINAL_CODES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")


def without_terminal_codes(text: str) -> str:
    """`text` as a terminal would show it, so that a coloured metric line reads as one."""
    return _TERMINAL_CODES.sub("", text) if "\x1b" in text else text


def parse_metrics(
    text: str, fmt: MetricFormat, patterns: Mapping[str, str] | None = None
) -> dict[str, float]:
    """All metrics ``fmt`` finds in ``text``; ``patterns`` (name -> regex) is for "regex"."""
    text = without_terminal_codes(text)
    if fmt == "kv":
        return _parse_kv(text)
    if fmt == "metric-line":
        return _parse_metric_lines(text)
    if fmt == "json":
        return _parse_json(text)
    if fmt == "regex":
        return _parse_regex(text, patterns or {})
    raise ValueError(f"unknown metric format {fmt!r}; expected one of {', '.join(METRIC_FORMATS)}")


def printed_values(text: str, fmt: MetricFormat, name: str,
                   patterns: Mapping[str, str] | None = None) -> list[float]:
    """Every value of `name` the output printed, in order (the last is the one used)."""
    text = without_terminal_codes(text)
    if fmt == "json":
        return [numbers[name] for numbers in _json_objects(text) if name in numbers]
    if fmt == "regex":
        pattern = (patterns or {}).get(name)
        if pattern is None:
            return []
        regex = compile_metric_regex(name, pattern)
        group: int | str = "value" if "value" in regex.groupindex else 1
        values = (parse_metric_value(m.group(group) or "") for m in regex.finditer(text))
        return [v for v in values if v is not None]
    found = []
    for line in text.splitlines():
        value = parse_metrics(line, fmt).get(name)
        if value is not None:
            found.append(value)
    return found


def _parse_kv(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in text.splitlines():
        m = _KV_RE.match(line)
        if m:
            found[m.group(1)] = to_float(m.group(2))
    return found


def _parse_metric_lines(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in text.splitlines():
        m = _METRIC_LINE_RE.match(line)
        if not m:
            continue
        for token in m.group(1).split():
            pair = _PAIR_RE.match(token)
            if pair:
                found[pair.group(1)] = to_float(pair.group(2))
    return found


def _json_objects(text: str) -> Iterator[dict[str, float]]:
    """The numbers of each JSON object line, in order."""
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            yield dict(_flatten(obj, ""))


def _parse_json(text: str) -> dict[str, float]:
    """Each name's value in the last JSON line that has it: JSON-lines logs end with records of
    other shapes (`{"event": "done", "elapsed_s": 0.01}` after `{"val_loss": 0.02}`)."""
    found: dict[str, float] = {}
    for numbers in _json_objects(text):
        found.update(numbers)
    return found


def _flatten(obj: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, float]]:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        # bool is an int subclass, but `"converged": true` is not a measurement.
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            yield name, float(value)
        elif isinstance(value, dict):
            yield from _flatten(value, f"{name}.")


def _parse_regex(text: str, patterns: Mapping[str, str]) -> dict[str, float]:
    found: dict[str, float] = {}
    for name, pattern in patterns.items():
        regex = compile_metric_regex(name, pattern)
        group: int | str = "value" if "value" in regex.groupindex else 1
        # The last match whose capture is a number: a later "loss: n/a" must not hide it.
        for m in reversed(list(regex.finditer(text))):
            value = parse_metric_value(m.group(group) or "")
            if value is not None:
                found[name] = value
                break
    return found


def compile_metric_regex(name: str, pattern: str) -> re.Pattern[str]:
    """Compile and validate one metric regex (one capture group, or a group named value)."""
    try:
        regex = re.compile(pattern, re.MULTILINE)
    except re.error as exc:
        raise ValueError(f"metric {name!r}: invalid regex {pattern!r}: {exc}") from exc
    if "value" not in regex.groupindex and regex.groups != 1:
        raise ValueError(
            f"metric {name!r}: regex {pattern!r} must have exactly one capture group "
            f"or a group named 'value' (it has {regex.groups})"
        )
    return regex


def format_metric_help(fmt: MetricFormat, name: str = "val_bpb", pattern: str | None = None) -> str:
    """A one-line example of what ``fmt`` expects, for "metric not found" messages."""
    if fmt == "kv":
        return f"expected lines like `{name}: 0.99`"
    if fmt == "metric-line":
        return f"expected lines like `METRIC {name}=0.99`"
    if fmt == "json":
        return f'expected JSON object lines like `{{"{name}": 0.99}}` (the last with it counts)'
    if fmt == "regex":
        shown = pattern if pattern is not None else rf"{name}=([0-9.eE+-]+)"
        return f"expected text matching `{shown}` (one capture group holding the number)"
    raise ValueError(f"unknown metric format {fmt!r}")
