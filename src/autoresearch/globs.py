"""Path globs as users write them in autoresearch.toml (`src/**/*.py`, `train.py`, `data/*`).

Python 3.11's fnmatch lets `*` cross directories and PurePath.match anchors from the right, so
neither matches what a user of git-style globs expects; this small translator does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache


@lru_cache(maxsize=512)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob: `**` spans directories, `*` and `?` stay inside one path segment."""
    pattern = pattern.strip().lstrip("/")
    if pattern.startswith("./"):
        pattern = pattern[2:]
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
                body = pattern[i + 1 : end].replace("\\", "\\\\")
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
