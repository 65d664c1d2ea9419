"""Knob discovery: the knobs the contract declares and the markers in in-scope files, each
checked to be one tune can set, else refused with how to fix it.

A knob that cannot work is said at `check` time, not as a failed proposal mid-session: a file
outside the scope or protected, a line that is missing, ambiguous or overridden later, a choice
the line cannot hold, a value in a JSON file.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from autoresearch.globs import matches
from autoresearch.guardrails import is_protected
from autoresearch.proposers.knob_files import in_scope_files, texts_with_markers
from autoresearch.proposers.knob_json import JSON_WHY, json_fix
from autoresearch.proposers.knob_lines import (
    Site,
    ambiguous_sites,
    assignment_sites,
    dialect_name,
    dialect_of,
    find_site,
    is_json,
    overriding_site,
    parse_value,
)
from autoresearch.proposers.knob_render import written_value
from autoresearch.proposers.knob_space import KINDS_HELP, parse_knob_spec
from autoresearch.proposers.knob_unusable_markers import unusable_markers_error
from autoresearch.proposers.knobs import Knob, KnobError, expected_line, locate, read_text
from autoresearch.repo_paths import PathRefused, canonical_path

if TYPE_CHECKING:
    from autoresearch.config import Config
_CONFIG_WHERE = "autoresearch.toml → knobs"


def _normalize(file: str, key: str) -> str:
    path = PurePosixPath(file.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not file.strip():
        raise KnobError(
            f"knob {key!r}: {file!r} is not a repo-relative path",
            where=_CONFIG_WHERE,
            fix='name the file relative to the repository root, e.g. "train.py:LR"',
        )
    return path.as_posix().removeprefix("./")


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


def _marker_knobs(root: Path, files: Sequence[str]) -> dict[str, Knob]:
    found: dict[str, Knob] = {}
    for rel, text in texts_with_markers(root, files):
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
                        fix=expected_line(name, rel),
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
                f"{JSON_WHY}",
                where=where,
                fix=json_fix(name, spec.strip(), file, _text_if_readable(root / file)),
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
                fix=expected_line(name, file),
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


def require_knobs(root: Path, config: Config) -> list[Knob]:
    """The knobs under `root`, each readable; KnobError (a config error) saying how to fix it when
    a declared knob's file or line is missing, or when there is no knob at all."""
    files = in_scope_files(root, config.scope)
    knobs = discover_knobs(root, config.knobs, files, protected=config.all_protected)
    if not knobs:
        unusable = unusable_markers_error(root, files)
        if unusable is not None:
            raise unusable
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
    site = locate(text, knob)
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
