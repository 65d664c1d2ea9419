"""Path globs as users write them in autoresearch.toml (`src/**/*.py`, `train.py`, `data/*`).

Python 3.11's fnmatch lets `*` cross directories and PurePath.match anchors from the right, so
neither matches what a user of git-style globs expects; this small translator does.

Globs are matched against canonical paths (`repo_paths.canonical_path`: no `.` segments, no
repeated or trailing slashes), so a pattern is put in the same form first: `src/./metric.py`
and `src//metric.py` protect `src/metric.py`, as the user meant. `pattern_problem` names the
patterns that can never match a canonical path (`..`, backslashes), which the config refuses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache


def normalize_pattern(pattern: str) -> str:
    """A glob in the form of the canonical paths it is matched against: no `.` segments, no
    repeated, leading or trailing slashes."""
    return "/".join(part for part in pattern.strip().split("/") if part not in ("", "."))


def escape_glob(text: str) -> str:
    """`text` as a glob matching itself only: `*`, `?` and `[` each in a class of its own (a
    directory named `my sub[1]` would otherwise read as a character class)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def pattern_problem(pattern: str) -> str | None:
    """Why a scope or protected glob can never match a canonical path (None when it can)."""
    if "\\" in pattern:
        return "contains a backslash (paths use '/')"
    if ".." in pattern.strip().split("/"):
        return "contains '..' (globs are relative to the repository root and stay inside it)"
    if not normalize_pattern(pattern):
        return "is empty"
    return None


@lru_cache(maxsize=512)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob: `**` spans directories, `*` and `?` stay inside one path segment."""
    pattern = normalize_pattern(pattern)
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                # A `[` in a class is literal in a glob, a nested set to `re`: escaped.
                body = pattern[i + 1 : end].replace("\\", "\\\\").replace("[", "\\[")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    # A pattern naming a directory also covers everything below it.
    return re.compile("".join(out) + "(?:/.*)?\\Z")


def matches(path: str, patterns: Iterable[str]) -> bool:
    """True when the repo-relative POSIX `path` matches any of `patterns`."""
    return any(glob_to_regex(p).match(path) for p in patterns)


def select(paths: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The paths matching any pattern, sorted."""
    return sorted(p for p in paths if matches(p, patterns))


def _sample_path(pattern: str) -> str:
    """One concrete path a glob matches (`src/**/*.py` → `src/x.py`), to compare two globs."""
    out = pattern.strip().lstrip("/").removeprefix("./").replace("**/", "").replace("**", "x")
    out = re.sub(r"\[!?[^\]]*\]", lambda m: m.group(0)[1:2] if m.group(0)[1] != "!" else "x", out)
    return out.replace("*", "x").replace("?", "x")


def globs_overlap(a: str, b: str) -> bool:
    """True when two globs obviously select the same files: equal, or one's sample path matches
    the other. (Whether two globs share a file in general depends on the repository's files;
    `check_preconditions` checks that file by file.)"""
    return a.strip() == b.strip() or matches(_sample_path(a), [b]) or matches(_sample_path(b), [a])
