"""What `init`'s answers point at: the evaluation protected and left out of the scope, and the
paths made relative to the repository root when `init` runs in a subdirectory.

The defaults (scope `*.py`, nothing protected) once left the evaluation editable: a proposer
rewrote evaluate.py to print `acc: 1.0`, and the change was kept. `init` writes the only guard
there is, so it guards what it can recognise, and says what it did.
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.config import ALWAYS_PROTECTED
from autoresearch.errors import ConfigError
from autoresearch.gitops.runner import GitError, git_names
from autoresearch.globs import escape_glob, globs_overlap, matches, normalize_pattern
from autoresearch.verify_targets import (
    command_directory,
    is_script_name,
    looks_like_evaluation,
    named_paths,
)


@dataclass
class Paths:
    """The path-bearing answers of `init`, and what was changed in them and why."""

    scope: list[str]
    protected: list[str]
    command: str
    notes: list[str] = field(default_factory=list)


def visible_files(directory: Path) -> list[str]:
    """The files git sees under `directory` (committed, or new and not ignored), relative to
    it: `init` often runs before the project's files are committed."""
    try:
        return sorted(set(git_names(directory, "ls-files", "-z", "--cached", "--others",
                                    "--exclude-standard")))
    except (GitError, OSError):
        return []


def _evaluation_files(paths: Paths, files: list[str]) -> tuple[list[str], list[str]]:
    """(the evaluation the command names, the evaluation beside its script in the scope), neither
    protected yet."""
    present = set(files)
    named = [p for p in named_paths(paths.command)
             if (p in present or is_script_name(p)) and looks_like_evaluation(p)]
    where = command_directory(paths.command)
    beside = [f for f in files if posixpath.dirname(f) == where and looks_like_evaluation(f)
              and matches(f, paths.scope) and f not in named]
    unprotected = [f for f in named + beside if not matches(f, paths.protected)]
    return [f for f in named if f in unprotected], [f for f in beside if f in unprotected]


def _is_default_scope(scope: list[str]) -> bool:
    """Whether the scope is init's default, which names no file: a scope the user chose says
    what they want researched, and a guess from a file's name must not take it away."""
    from autoresearch.scaffold import DEFAULTS  # imported here: scaffold imports this module

    return scope == DEFAULTS.scope


def _rest(glob: str, files: list[str], guarded: list[str]) -> list[str]:
    """The files `glob` holds once `guarded` are protected."""
    return [f for f in files if matches(f, [glob]) and not matches(f, guarded)]


def _guessed_neighbours(paths: Paths, files: list[str], named: list[str],
                        beside: list[str]) -> tuple[list[str], list[str]]:
    """(the files beside the command's script to protect, notes on those left in scope).

    The command does not run them, so the guess only fills a default scope and gives way
    whenever it would leave a scope glob empty: never an error for a file that is a guess."""
    if not _is_default_scope(paths.scope):
        return [], [f"{f} looks like an evaluation by its name; it stays in scope as you asked "
                    "(the verify command does not run it)" for f in beside]
    guarded = [*paths.protected, *named, *beside]
    emptying = [f for f in beside if any(matches(f, [glob]) and not _rest(glob, files, guarded)
                                         for glob in paths.scope)]
    notes = [f"{f} looks like an evaluation by its name, but the scope holds nothing else, so it "
             "stays in scope (the verify command does not run it): protect it yourself if it "
             "computes the metric" for f in emptying]
    return [f for f in beside if f not in emptying], notes


def protect_evaluation(paths: Paths, files: list[str]) -> Paths:
    """Add to `protected` the evaluation the verify command names (its script, when the name
    says it judges: eval*, score*, metric*, bench*, test*) and, in a default scope, such files
    beside it; narrow each scope glob that held one to the other files it matches."""
    named, beside = _evaluation_files(paths, files)
    beside, notes = _guessed_neighbours(paths, files, named, beside)
    evaluation = named + beside
    if not evaluation:
        return Paths(scope=paths.scope, protected=paths.protected, command=paths.command,
                     notes=paths.notes + notes)
    notes += [f"protected {f}: the verify command runs it and its name says it judges the run, "
              "so the proposer must not rewrite it" for f in named]
    notes += [f"protected {f}: its name says it judges the run and it sits beside the command's "
              "script, so the proposer must not rewrite it" for f in beside]
    protected = [*paths.protected, *evaluation]
    scope: list[str] = []
    for glob in paths.scope:
        held = [f for f in evaluation if matches(f, [glob])]
        # A glob holding what the user (or the tool) protects already is a contradiction the
        # config's validation names against the flags: narrowing it would hide it.
        if not held or any(globs_overlap(glob, p) for p in [*ALWAYS_PROTECTED, *paths.protected]):
            scope.append(glob)
            continue
        rest = _rest(glob, files, protected)
        if not rest:  # only a file the command runs can get here: see _guessed_neighbours
            raise ConfigError(
                f"the scope {glob!r} holds only {', '.join(held)}, the evaluation the verify "
                "command runs: a proposer allowed to edit it could print any score it likes",
                where="--scope", fix="give --scope the files the proposer may change (e.g. "
                "--scope model.py), creating them first if need be; protected files can never "
                "be in the scope")
        scope += [f for f in rest if f not in scope]
        notes.append(f"narrowed the scope {glob!r} to {', '.join(rest)}: it held "
                     f"{', '.join(held)}, which is protected (a file can't be both)")
    return Paths(scope=scope, protected=protected, command=paths.command,
                 notes=paths.notes + notes)


def rebase(paths: Paths, subdirectory: str, root: Path) -> Paths:
    """The answers as seen from the repository root, for `init` run in `subdirectory` below it:
    autoresearch.toml lives at the root, and its globs and command are read from there."""
    def under(glob: str) -> str:
        return posixpath.join(escape_glob(subdirectory), normalize_pattern(glob))

    note = (f"you ran init in {subdirectory}/, below the repository root {root}: "
            f"{CONFIG_AT_ROOT}, so its scope and protected globs are prefixed with "
            f"{subdirectory}/ and the command runs as `cd {shlex.quote(subdirectory)} && …`")
    return Paths(scope=[under(g) for g in paths.scope],
                 protected=[under(g) for g in paths.protected],
                 command=f"cd {shlex.quote(subdirectory)} && {paths.command}",
                 notes=[*paths.notes, note])


CONFIG_AT_ROOT = "autoresearch.toml is written at the root, where every command reads it"


def settle_paths(paths: Paths, root: Path, here: Path) -> Paths:
    """Protect the evaluation seen from `here` (the directory init ran in), then make the
    answers relative to `root` when `here` is below it."""
    guarded = protect_evaluation(paths, visible_files(here))
    try:
        subdirectory = here.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:  # `here` is not inside `root`: nothing to rebase
        return guarded
    return guarded if subdirectory in ("", ".") else rebase(guarded, subdirectory, root)
