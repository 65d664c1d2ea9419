"""Knobs: named literal values in in-scope files that the offline `tune` proposer may set.

A knob is declared either in the contract (`[knobs] "train.py:LR" = "log(1e-4, 1e-1)"`) or by a
marker comment on its own line (`LR = 0.02  # knob: log(1e-3, 1e-1)`). Python files are read as
`NAME = literal` / `NAME: type = literal`; any other file (TOML, YAML, INI, .env, plain text) as
`KEY = value` / `KEY: value`, so repositories that are not Python can be tuned too.

This module holds what a knob is (`Knob`, `KnobError`) and reads and rewrites its value in a
file's text. The rest lives beside it, one job each: spec parsing and KnobSpace in `knob_space`,
finding lines in `knob_lines`, writing values in `knob_render`, finding knobs in
`knob_discovery`, the files looked at in `knob_files`, markers no knob is made of in
`knob_unusable_markers`, JSON files in `knob_json`, and what `check` and `run` say about the
knobs in `knob_report`. Nothing here imports optuna: config.py imports `parse_knob_spec` and
`check` should stay fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from autoresearch.errors import ConfigError
from autoresearch.proposers.knob_lines import (
    Dialect,
    Site,
    dialect_of,
    find_site,
    parse_value,
    source_lines,
)
from autoresearch.proposers.knob_render import written_value
from autoresearch.proposers.knob_space import KnobSpace, Scalar

__all__ = [
    "Knob",
    "KnobError",
    "expected_line",
    "locate",
    "read_source",
    "read_text",
    "read_value",
    "rewrite",
]
class KnobError(ConfigError):
    """A knob cannot be found, parsed or edited: the contract or a marker needs fixing."""


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


def locate(text: str, knob: Knob) -> Site:
    site = find_site(text, knob.name, knob.dialect)
    if site is None:
        raise KnobError(
            f"knob {knob.key!r}: no line assigning a literal to {knob.name} in {knob.file}",
            where=knob.file,
            fix=expected_line(knob.name, knob.file),
        )
    return site


def read_value(text: str, knob: Knob) -> Scalar:
    """The knob's current value in `text` (a file's content)."""
    return parse_value(locate(text, knob).value, knob.dialect)[1]


def read_source(text: str, knob: Knob) -> str:
    """The knob's current value exactly as written (for messages such as `0.02 → 0.0315`)."""
    return locate(text, knob).value


def rewrite(text: str, assignments: Mapping[str, Scalar], *, path: str | None = None) -> str:
    """`text` with the value of each `NAME` in `assignments` replaced, and nothing else changed.

    Indentation, annotations, spacing, trailing comments and line endings are kept; strings keep
    their quote style. `path` picks the syntax (Python for .py or when omitted). Raises
    ValueError when a value would not read back identically (e.g. a NaN).
    """
    dialect = dialect_of(path)
    lines = source_lines(text)
    for name, value in assignments.items():
        site = find_site(text, name, dialect)
        if site is None:
            raise KnobError(
                f"no line assigning a literal to {name} in {path or 'the file'}",
                where=path,
                fix=expected_line(name, path or "x.py"),
            )
        lines[site.index] = site.head + written_value(value, site.value, dialect) + site.tail
    return "".join(lines)


def expected_line(name: str, file: str) -> str:
    if dialect_of(file) == "python":
        return (
            f"expected a line such as `{name} = 0.01` or `{name}: float = 0.01` "
            "(a single literal on the right); check the name's spelling"
        )
    return f"expected a line such as `{name} = 0.01` or `{name}: 0.01`; check the name's spelling"


def read_text(path: Path) -> str:
    """A file's exact text. Not Path.read_text(): universal newlines would turn CRLF into LF."""
    return path.read_bytes().decode("utf-8")
