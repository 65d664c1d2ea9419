"""What no model prompt of a review may carry: the content of protected files.

A research config's `protected` files (and `ALWAYS_PROTECTED`, config.py) hold what the proposer
must never see: the evaluation, held-out data, the contract. A review may run on a change that
touches one, and its LLM reviewers would send the file whole (its diff, its numbered head text,
its history); so a changed file whose path, or whose path before a rename, matches a protected
glob is left out of every prompt, and the review's notes say which files were.

Without a config the same holds for `ALWAYS_PROTECTED` and for `SECRET_FILES`, the files that
conventionally carry credentials (a `.env` is usually untracked and ignored, yet `--diff` can
name it). The files are still linted by the offline analyzers: those run on this machine.
"""

from __future__ import annotations

import posixpath
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

from autoresearch.config import ALWAYS_PROTECTED, CONFIG_NAME
from autoresearch.errors import ConfigError
from autoresearch.guardrails import is_protected
from autoresearch.review.canonical import NotInRepository, pattern_forms
from autoresearch.review.diff import ChangedFile

# Credentials by convention, at any depth: dotenv files, private keys, package-index tokens.
SECRET_FILES: tuple[str, ...] = (
    "**/.env", "**/.env.*", "**/*.pem", "**/*.key", "**/id_rsa", "**/id_dsa", "**/id_ecdsa",
    "**/id_ed25519", "**/.netrc", "**/.npmrc", "**/.pypirc",
)
DEFAULT_PROTECTED: tuple[str, ...] = (*ALWAYS_PROTECTED, *SECRET_FILES)
MAX_NAMED = 10  # files named in the note; the rest are counted


def configured_protected(root: Path) -> tuple[str, ...]:
    """The `protected` globs of `root`'s autoresearch.toml (none without one).

    Read on its own, so that a repository that uses only `autoresearch review` (no `scope`, no
    `[verify]`) still has its protected list honoured; a list that cannot be read stops the
    review rather than being ignored, since ignoring it would send those files to a model."""
    path = root / CONFIG_NAME
    if not path.is_file():
        return ()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {CONFIG_NAME}: {exc}", where=str(path),
                          fix="fix the file: its `protected` list says what no model may "
                          "read") from None
    patterns = data.get("protected", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise ConfigError("`protected` is not a list of path globs", where=f"{path} → protected",
                          fix='write it as a list of strings: protected = ["score.py"]')
    return tuple(form for pattern in patterns for form in _canonical_forms(root, pattern, path))


def _canonical_forms(root: Path, pattern: str, config: Path) -> list[str]:
    """A protected glob in the forms it protects (canonical.py): `lib/../score.py` protects
    score.py, `alias/score.py` through a link to `src/` protects src/score.py too; one that can
    only name paths outside the repository protects nothing, so it is refused, not ignored."""
    try:
        return pattern_forms(root, pattern)
    except NotInRepository as exc:
        raise ConfigError(f"protected pattern {pattern!r} names {exc.reason}",
                          where=f"{config} → protected",
                          fix="write globs relative to the repository root, with '/' (the "
                          "file it should keep from every model, as `git ls-files` names it)"
                          ) from None


def withheld_files(files: Iterable[ChangedFile], patterns: Sequence[str]) -> dict[str, str]:
    """The changed files whose content no prompt may carry, each with the reason in words."""
    out: dict[str, str] = {}
    for changed in files:
        # Judged on the canonical form (`./a.py` is a.py), whatever form the caller passed.
        pattern = is_protected(posixpath.normpath(changed.path), patterns)
        if pattern is not None:
            out[changed.path] = f"matches {pattern}"
            continue
        if changed.old_path and changed.old_path != changed.path:
            pattern = is_protected(posixpath.normpath(changed.old_path), patterns)
            if pattern is not None:
                out[changed.path] = f"renamed from {changed.old_path}, which matches {pattern}"
    return out


def withheld_note(withheld: dict[str, str]) -> str:
    named = [f"{path} ({why})" for path, why in list(withheld.items())[:MAX_NAMED]]
    more = len(withheld) - len(named)
    return ("protected file(s) left out of every model prompt (content, diff and history; the "
            "offline analyzers still read them): " + "; ".join(named)
            + (f"; and {more} more" if more > 0 else ""))
