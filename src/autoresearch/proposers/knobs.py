"""Knobs: named literal values in in-scope files that the offline `tune` proposer may set.

A knob is declared either in the contract (`[knobs] "train.py:LR" = "log(1e-4, 1e-1)"`) or by a
marker comment on its own line (`LR = 0.02  # knob: log(1e-3, 1e-1)`). Python files are read as
`NAME = literal` / `NAME: type = literal`; any other file (TOML, YAML, INI, .env, plain text) as
`KEY = value` / `KEY: value`, so repositories that are not Python can be tuned too.

This module discovers knobs and reads and rewrites their values. Spec parsing and KnobSpace live
in `knob_space`, the line-level text handling in `knob_lines`; both are re-exported here.
Nothing here imports optuna: config.py imports `parse_knob_spec` and `check` should stay fast.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

from autoresearch.errors import ConfigError
from autoresearch.globs import matches, select
from autoresearch.guardrails import is_protected
from autoresearch.proposers.knob_lines import (
    KNOB_LINE_FORMS,
    Dialect,
    Site,
    ambiguous_sites,
    assignment_sites,
    dialect_name,
    dialect_of,
    find_site,
    is_json,
    overriding_site,
    parse_value,
    render_value,
    semicolon_markers,
    source_lines,
    stray_markers,
    written_value,
)
from autoresearch.proposers.knob_space import (
    KINDS_HELP,
    KnobKind,
    KnobSpace,
    Scalar,
    parse_knob_spec,
)
from autoresearch.repo_paths import PathRefused, canonical_path

if TYPE_CHECKING:
    from autoresearch.config import Config

__all__ = [
    "Dialect",
    "Knob",
    "KnobError",
    "KnobKind",
    "KnobSpace",
    "Scalar",
    "describe_knobs",
    "dialect_of",
    "discover_knobs",
    "in_scope_files",
    "outside_their_space",
    "parse_knob_spec",
    "parse_value",
    "read_source",
    "read_text",
    "read_value",
    "render_value",
    "require_knobs",
    "rewrite",
]

# Marker files larger than this are data, not code; scanning them would cost every experiment.
_MAX_SCAN_BYTES = 2_000_000
_CONFIG_WHERE = "autoresearch.toml → knobs"


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


def _locate(text: str, knob: Knob) -> Site:
    site = find_site(text, knob.name, knob.dialect)
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
    lines = source_lines(text)
    for name, value in assignments.items():
        site = find_site(text, name, dialect)
        if site is None:
            raise KnobError(
                f"no line assigning a literal to {name} in {path or 'the file'}",
                where=path,
                fix=_expected_line(name, path or "x.py"),
            )
        lines[site.index] = site.head + written_value(value, site.value, dialect) + site.tail
    return "".join(lines)


def _expected_line(name: str, file: str) -> str:
    if dialect_of(file) == "python":
        return (
            f"expected a line such as `{name} = 0.01` or `{name}: float = 0.01` "
            "(a single literal on the right); check the name's spelling"
        )
    return f"expected a line such as `{name} = 0.01` or `{name}: 0.01`; check the name's spelling"


def _json_fix(name: str, spec: str, file: str, text: str | None) -> str:
    """How to tune a value that lives in a JSON file (`text`, when it could be read): from a
    file tune can rewrite, the line to write there holding the value the program runs now."""
    notebook = PurePosixPath(file).suffix.lower() == ".ipynb"
    value = _example_value(name, spec, text, notebook)
    if notebook:
        shown = render_value(value, "", "python")
        return (f"move {name} into a Python module the notebook imports, add that module to scope "
                f"and mark its line there: `{name} = {shown}  # knob: {spec}`")
    shown = render_value(value, "", "yaml")
    return (f"move {name} into a file tune can rewrite that your program reads instead (YAML, "
            f"TOML, INI, .env or a Python module), then mark its line there (`{name}: {shown}  "
            f'# knob: {spec}`) or declare it in [knobs] ("params.yaml:{name}" = "{spec}")')


# A scalar JSON value: a number, a string without escapes, true, false, null.
_JSON_SCALAR = r'(-?\d[\d.eE+\-]*|"[^"\\\n]*"|true|false|null)'


def _example_value(name: str, spec: str, text: str | None, notebook: bool) -> Scalar:
    """The value `name` has in a JSON file's `text` (in a notebook, on its code line), when it
    can be read and the knob's space could hold one of its type; else a value inside the space
    (an example outside its own space would be the next thing to fix)."""
    try:
        space: KnobSpace | None = parse_knob_spec(spec)
    except ValueError:
        space = None
    found = None
    if text is not None:
        key = (rf"\b{re.escape(name)}[ \t]*=[ \t]*" if notebook
               else rf'"{re.escape(name)}"[ \t]*:[ \t]*')
        found = re.search(key + _JSON_SCALAR, text)
    if found is not None:
        try:
            value: Scalar = json.loads(found.group(1))
        except ValueError:
            pass
        else:
            if space is None or space.accepts_type(value):
                return value
    if space is None:
        return 0.01
    if space.kind == "choice":
        return space.choices[0]
    middle = (math.sqrt(space.low * space.high) if space.kind in ("log", "logint")
              else (space.low + space.high) / 2)
    return space.snap(middle)


# Why no knob can live in a JSON file, for the messages that say so.
_JSON_WHY = ("tune rewrites only `NAME = value` / `NAME: value` lines, and JSON quotes its keys "
             "and has no comments to carry a `# knob:` marker")
# A marker's spec in a JSON file, wherever the user put it: a `//` or `#` comment, a string.
_JSON_MARKER = re.compile(r"\bknob:\s*(?P<spec>[a-z]+\([^)\n]*\))")
# The name on a JSON line (`"lr": 0.001,`) or a notebook's code line (`"LR = 0.02\n",`).
_JSON_NAME = re.compile(r'[ \t]*"(?P<name>[A-Za-z_][\w.\-]*)(?:"[ \t]*:|[ \t]*[=:])')


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


def _check_value(knob: Knob, site: Site, where: str) -> None:
    _check_choices_writable(knob, site, where)
    if knob.dialect == "toml" and any(c is None for c in knob.space.choices):
        # TOML has no null: tune wrote `mode = null`, which no TOML reader loads.
        raise KnobError(
            f"knob {knob.key!r}: {knob.space} offers None, which a TOML file cannot hold",
            where=where,
            fix='offer a value TOML has instead, e.g. "none" (a string the program reads as None)',
        )
    value = parse_value(site.value, knob.dialect)[1]
    if not knob.space.accepts_type(value):
        raise KnobError(
            f"knob {knob.key!r}: the current value {site.value} is not a number, "
            f"but its space {knob.space} is numeric",
            where=where,
            fix="point the knob at a numeric assignment, or use choice(...) for other values",
        )


def _check_choices_writable(knob: Knob, site: Site, where: str) -> None:
    """Every choice can be written on the knob's line so that it reads back as itself: said now,
    not as a failed proposal mid-session (`OPT := -O1` in a Makefile cannot become `a b#c`, and
    quotes would be part of the value there)."""
    for choice in knob.space.choices:
        if knob.dialect == "toml" and choice is None:
            continue  # said by _check_value, with its own fix
        try:
            written_value(choice, site.value, knob.dialect)
        except ValueError as exc:
            ok, typed = (parse_value(choice, knob.dialect) if isinstance(choice, str)
                         else (False, None))
            raise KnobError(
                f"knob {knob.key!r}: its choice {choice!r} cannot be written on line {knob.line} "
                f"of {knob.file}: {exc}",
                where=where,
                fix=(f"offer it as {typed!r}, without quotes in choice(...)"
                     if ok and not isinstance(typed, str) else
                     f"drop {choice!r} from the choices, or offer it in a form "
                     f"{dialect_name(knob.dialect)} reads as it is (no space at either end, no "
                     "comment character, no quote)"),
            ) from None


def _files_with_markers(root: Path, files: Sequence[str]) -> Iterator[tuple[str, str | None]]:
    """(file, text) of each in-scope file small and readable enough to hold a `# knob:` marker,
    and that mentions one; the text None when the file is not UTF-8 (a Latin-1 source file: its
    markers can be neither read nor rewritten, and saying only "no marker" would be untrue)."""
    for rel in files:
        path = root / rel
        try:
            if not path.is_file() or path.stat().st_size > _MAX_SCAN_BYTES:
                continue
            data = path.read_bytes()  # exact: no universal newlines (see read_text)
        except OSError:
            continue  # unreadable files cannot hold markers
        if b"knob:" not in data:
            continue
        try:
            text: str | None = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        yield rel, text


def _texts_with_markers(root: Path, files: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(file, text) of each in-scope UTF-8 file that mentions a `# knob:` marker."""
    for rel, text in _files_with_markers(root, files):
        if text is not None:
            yield rel, text


def _markers_not_utf8(root: Path, files: Sequence[str]) -> list[str]:
    """The in-scope files that mention `knob:` but are not UTF-8 text."""
    return [rel for rel, text in _files_with_markers(root, files) if text is None]


def _marker_knobs(root: Path, files: Sequence[str]) -> dict[str, Knob]:
    found: dict[str, Knob] = {}
    for rel, text in _texts_with_markers(root, files):
        dialect = dialect_of(rel)
        for name, sites in assignment_sites(text, dialect).items():
            for site in sites:
                if site.marker is None:
                    continue
                where = f"{rel}:{site.index + 1}"
                try:
                    space = parse_knob_spec(site.marker)
                except ValueError as exc:
                    raise KnobError(
                        f"knob marker for {name}: {exc}", where=where, fix=f"use {KINDS_HELP}"
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
            raise KnobError(f"knob {key!r}: {exc}", where=where, fix=f"use {KINDS_HELP}") from None
        if is_json(file):  # said first: no fix of the file's name, scope or protection helps
            raise KnobError(
                f"knob {key!r}: {file} is a JSON file, and tune cannot tune a value in JSON: "
                f"{_JSON_WHY}",
                where=where,
                fix=_json_fix(name, spec.strip(), file, _text_if_readable(root / file)),
            )
        # Protected first: such a file is outside the scope too, and adding it to the scope
        # would only trade this error for "protected ... is inside the scope".
        _refuse_protected(key, file, protected, where)
        path = root / file
        if not path.is_file() and not path.is_symlink():
            near = difflib.get_close_matches(file, scope_files, n=1, cutoff=0.6)
            raise KnobError(
                f"knob {key!r}: {file} does not exist",
                where=where,
                fix=(f'did you mean "{near[0]}:{name}"? ' if near else "")
                + "check the file name (it is relative to the repository root)",
            )
        if file not in scope_set and not matches(file, scope_files):
            raise KnobError(
                f"knob {key!r} is in {file}, which is outside the scope (the harness would refuse "
                "the edit)",
                where=where,
                fix=f'add "{file}" to scope in autoresearch.toml, or remove the knob',
            )
        try:  # the guardrails would refuse every edit of a file reached through a symlink
            canonical_path(file, root, exact=True)
        except PathRefused as exc:
            raise KnobError(f"knob {key!r}: {file} {exc.reason}", where=where) from None
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
        site = find_site(text, name, dialect_of(file))
        if site is None:
            raise KnobError(
                f"knob {key!r}: found no line assigning a literal to {name} in {file}",
                where=where,
                fix=_expected_line(name, file),
            )
        _refuse_ambiguous(key, text, name, file, spec.strip(), where)
        knob = Knob(file, name, space, site.index + 1, "config")
        _check_value(knob, site, where)
        # A contract entry overrides a marker on the same line, whatever name it gives the key
        # ("cfg.yaml:finetune.lr" for a marked `lr`): two knobs would fight over one value.
        knobs = {k: v for k, v in knobs.items()
                 if not (v.source == "marker" and v.file == file and v.line == knob.line)}
        knobs[knob.key] = knob
    return sorted(knobs.values(), key=lambda k: (k.file, k.line, k.name))


def _refuse_ambiguous(key: str, text: str, name: str, file: str, spec: str, where: str) -> None:
    """A key found under two sections, none of them named: tune would have tuned the first one
    without a word, perhaps not the one the program reads."""
    twins = ambiguous_sites(text, name, dialect_of(file))
    if not twins:
        return
    lines = " and ".join(f"{s.path} (line {s.index + 1})" for s in twins)
    raise KnobError(
        f"knob {key!r}: {file} has {name} under more than one section: {lines}; tune cannot tell "
        "which one you mean",
        where=where,
        fix=f'name it with its section, e.g. "{file}:{twins[-1].path}" = "{spec}", or end the '
        f"intended line with a marker (`# knob: {spec}`) and remove this entry",
    )


def _text_if_readable(path: Path) -> str | None:
    """A file's text, or None when it is missing or not UTF-8 text (only a message needs it)."""
    try:
        return read_text(path)
    except (OSError, UnicodeDecodeError):
        return None


def _refuse_protected(key: str, file: str, protected: Sequence[str], where: str) -> None:
    """A knob in a protected file can never be tuned: say which rule protects it, and the fix
    that can be followed (the contract and the brief can't be unprotected)."""
    from autoresearch.config import ALWAYS_PROTECTED  # local: config imports this package

    glob = is_protected(file, protected)
    if glob is None:
        return
    if glob in ALWAYS_PROTECTED:
        raise KnobError(
            f"knob {key!r} is in {file}, which is always protected (the contract and the brief "
            "can never change)",
            where=where,
            fix="remove the knob; a knob's value must live in a file the proposer may edit",
        )
    raise KnobError(
        f"knob {key!r} is in {file}, which is protected (protected glob {glob!r}): the proposer "
        "may never change it",
        where=where,
        fix="remove the knob, or move the value into an in-scope file the evaluation reads; "
        f"only if {file} is not part of the evaluation, drop {glob!r} from protected and add "
        f'"{file}" to scope',
    )


def in_scope_files(root: Path, scope: Sequence[str]) -> list[str]:
    """The files under `root` that the scope globs select: git's list, else a directory walk."""
    from autoresearch import gitops  # local: config imports this module
    from autoresearch.gitops.runner import GitError

    try:
        return select(gitops.tracked_files(root), scope)
    except (GitError, OSError):
        pass  # not a git checkout (tests, exported trees)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # .git, .autoresearch, .venv
        rel = Path(dirpath).relative_to(root)
        found += [(rel / f).as_posix() for f in filenames]
    return select(found, scope)


def require_knobs(root: Path, config: Config) -> list[Knob]:
    """The knobs under `root`, each readable; KnobError (a config error) saying how to fix it when
    a declared knob's file or line is missing, or when there is no knob at all."""
    files = in_scope_files(root, config.scope)
    knobs = discover_knobs(root, config.knobs, files, protected=config.all_protected)
    if not knobs:
        stray = _stray_markers(root, files)
        if stray:
            where, line = stray[0]
            raise KnobError(
                "the tune proposer found no knobs to tune: [knobs] declares none, and the "
                f"`# knob:` marker at {where} is on a line it cannot rewrite: {line}"
                + (f" (and {len(stray) - 1} more)" if len(stray) > 1 else ""),
                where=where,
                fix=f"write the knob's line in one of the forms {KNOB_LINE_FORMS}, the value a "
                "single literal (`+=` appends and `!=` runs a shell: neither sets a value)",
            )
        semicolon = _semicolon_markers(root, files)
        if semicolon:
            where, kind = semicolon[0]
            raise KnobError(
                "the tune proposer found no knobs to tune: [knobs] declares none, and the "
                f"`; knob:` marker at {where} is no comment: in {kind} `;` is part of the value "
                "(only an INI file's `;` starts a comment)",
                where=where,
                fix="write the marker after `#` instead: `KEY: value  # knob: ...`",
            )
        in_json = _json_markers(root, files)
        if in_json:
            where, fix = in_json[0]
            raise KnobError(
                "the tune proposer found no knobs to tune: [knobs] declares none, and the "
                f"`knob:` marker at {where} is in a JSON file, where tune cannot tune a value: "
                f"{_JSON_WHY}"
                + (f" (and {len(in_json) - 1} more such marker(s))" if len(in_json) > 1 else ""),
                where=where,
                fix=fix,
            )
        unreadable = _markers_not_utf8(root, files)
        if unreadable:
            raise KnobError(
                "the tune proposer found no knobs to tune: [knobs] declares none, and "
                f"{unreadable[0]} has `# knob:` markers but is not UTF-8 text, so tune can "
                "neither read nor rewrite its lines"
                + (f" (and {len(unreadable) - 1} more such file(s))" if len(unreadable) > 1
                   else ""),
                where=unreadable[0],
                fix=f"save {unreadable[0]} as UTF-8 (e.g. iconv -f latin1 -t utf-8), then commit "
                    "it")
        shown = ", ".join(files[:5]) + (" …" if len(files) > 5 else "")
        raise KnobError(
            "the tune proposer found no knobs to tune: [knobs] declares none and no in-scope "
            f"file ({shown or 'none'}) has a `# knob:` marker",
            where=_CONFIG_WHERE,
            fix='declare one, e.g. [knobs] "train.py:LR" = "log(1e-4, 1e-1)", or mark a line of '
            "an in-scope file: LR = 0.02  # knob: log(1e-3, 1e-1); or use a proposer that edits "
            'code ([proposer] name = "llm" with an API key)',
        )
    texts = {file: read_text(root / file) for file in {k.file for k in knobs}}
    for knob in knobs:
        _refuse_overridden(texts[knob.file], knob)
    return knobs


def _refuse_overridden(text: str, knob: Knob) -> None:
    """A knob whose line a later top-level assignment overrides would tune nothing: every
    experiment would rerun the same program."""
    site = _locate(text, knob)
    later = overriding_site(text, site, knob.dialect)
    if later is not None:
        raise KnobError(
            f"knob {knob.key!r}: {knob.name} is assigned at top level more than once in "
            f"{knob.file} (lines {site.index + 1} and {later.index + 1}); the knob would rewrite "
            f"line {site.index + 1}, but line {later.index + 1} comes later and sets the value "
            "the program uses",
            where=f"{knob.file}:{later.index + 1}",
            fix="delete one of the assignments, or move the knob to the last one (put the "
            "`# knob:` marker on that line)",
        )


def _stray_markers(root: Path, files: Sequence[str]) -> list[tuple[str, str]]:
    """("file:line", line) of each `# knob:` marker on a line that is not a knob line."""
    return [(f"{rel}:{i + 1}", line) for rel, text in _texts_with_markers(root, files)
            if not is_json(rel) for i, line in stray_markers(text, dialect_of(rel))]


def _semicolon_markers(root: Path, files: Sequence[str]) -> list[tuple[str, str]]:
    """("file:line", the file's kind) of each `; knob:` marker in a file where `;` starts no
    comment (anything but INI): it reads as part of the value, and no knob is made of it."""
    return [(f"{rel}:{i + 1}", dialect_name(dialect_of(rel)))
            for rel, text in _texts_with_markers(root, files) if not is_json(rel)
            for i, _ in semicolon_markers(text, dialect_of(rel))]


def _json_markers(root: Path, files: Sequence[str]) -> list[tuple[str, str]]:
    """("file:line", how to tune it instead) of each knob marker in an in-scope JSON file,
    however it was written there."""
    found = []
    for rel, text in _texts_with_markers(root, files):
        if not is_json(rel):
            continue
        for i, line in enumerate(source_lines(text)):
            marker = _JSON_MARKER.search(line)
            if marker:
                named = _JSON_NAME.match(line)
                name = named.group("name") if named else "NAME"
                found.append((f"{rel}:{i + 1}", _json_fix(name, marker.group("spec"), rel, text)))
    return found


def describe_knobs(knobs: Sequence[Knob], root: Path | None = None,
                   scope: Sequence[str] = ()) -> str:
    """Every knob, by name (`check` shows it whole; `run`'s header shortens it), then the
    `# knob:` markers of the in-scope files under `root` that are no knob (a line tune cannot
    rewrite, a file that is not UTF-8): they were dropped without a word once any knob existed."""
    said = f"{len(knobs)} knob(s): {', '.join(k.key for k in knobs)}"
    if root is None:
        return said
    files = in_scope_files(root, scope)
    unused = [f"{where} (not a line tune can rewrite: {line.strip()[:60]})"
              for where, line in _stray_markers(root, files)]
    unused += [f"{where} (`;` starts no comment in {kind}: write `# knob:`)"
               for where, kind in _semicolon_markers(root, files)]
    unused += [f"{where} (in a JSON file, where tune cannot tune a value)"
               for where, _ in _json_markers(root, files)]
    unused += [f"{rel} (not UTF-8 text)" for rel in _markers_not_utf8(root, files)]
    if unused:
        said += (f"; {len(unused)} `# knob:` marker(s) ignored: " + "; ".join(unused[:5])
                 + (f" and {len(unused) - 5} more" if len(unused) > 5 else ""))
    return said + "".join(f"\n! {warning}" for warning in outside_their_space(root, knobs))


def outside_their_space(root: Path, knobs: Sequence[Knob]) -> list[str]:
    """A warning for each knob whose value in `root` lies outside its space. Not an error: the
    session runs, measured from the file as it is, but the baseline then sits where tune never
    proposes, and the user most likely mistyped the value or the space."""
    texts: dict[str, str] = {}
    warnings = []
    for knob in knobs:
        if knob.file not in texts:
            texts[knob.file] = read_text(root / knob.file)
        written = read_source(texts[knob.file], knob)
        why = knob.space.why_outside(parse_value(written, knob.dialect)[1])
        if why is None:
            continue
        widen = (f"add {written} to the choices" if knob.space.kind == "choice" else
                 f"widen the range to take in {written}" if why.startswith(("below", "above"))
                 else f"change the space so that {written} is one of its values")
        warnings.append(
            f"{knob.file}:{knob.line}: knob {knob.name} = {written} lies outside its space "
            f"{knob.space} ({why}): the baseline runs it as written, but tune proposes only "
            "values inside the space, so no later experiment comes back to it"
            f"\n  fix:   {widen}, or set {knob.name} to a value inside the space and commit")
    return warnings
