"""How `finalize` groups a session's kept commits, and names each group's branch.

Commits that share a file (directly, or through a chain of other commits) land in the same group,
so a file belongs to exactly one group; a group's branch name covers every change it holds:
`<prefix>NN-<slug>` (`group_branch`), a shape `is_group_branch` recognises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceCommit:
    sha: str
    exp_id: str | None
    title: str
    files: list[str]
    subject: str | None = None  # replaces the source's subject line (it had none worth keeping)


def group_commits(commits: list[SourceCommit]) -> list[list[SourceCommit]]:
    """Connected components of "touches a common file", in order of each group's first commit."""
    parent = list(range(len(commits)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, commit in enumerate(commits):
        for path in commit.files:
            if path in owner:
                a, b = find(owner[path]), find(i)
                # Keep the earlier commit as the root so groups stay in first-commit order.
                parent[max(a, b)] = min(a, b)
            else:
                owner[path] = i
    groups: dict[int, list[SourceCommit]] = {}
    for i, commit in enumerate(commits):
        groups.setdefault(find(i), []).append(commit)
    return [groups[root] for root in sorted(groups)]


def slug(text: str, limit: int = 40) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (words[:limit].rstrip("-") or "change")


# Words that say little in a branch name.
_FILLER = frozenset({
    "a", "an", "the", "to", "of", "in", "on", "at", "for", "from", "with", "and", "or", "by",
    "into", "as", "is", "be", "it", "its", "this", "that", "than", "then", "so", "use", "using",
    "set", "try",
})


def _key_words(title: str, n: int) -> str:
    words = re.findall(r"[A-Za-z0-9]+(?:\.[0-9]+)?", title)
    kept = [w for i, w in enumerate(words) if w.lower() not in _FILLER or _is_a_name(words, i)]
    return slug(" ".join(kept[:n] or words[:n]), limit=60)


def _is_a_name(words: list[str], i: int) -> bool:
    """A capital one-letter word is a name ("raise A to 1": the knob A), not the article, unless
    it opens the title before a word that is not a filler ("A larger batch")."""
    word = words[i]
    if len(word) != 1 or not word.isupper():
        return False
    opens_a_phrase = (i == 0 and i + 1 < len(words) and words[i + 1].isalpha()
                      and words[i + 1].lower() not in _FILLER)
    return not opens_a_phrase


# "DEPTH 3 → 4" (tune's titles; "->" too): a value's old and new sides.
_CHANGED_VALUE = re.compile(r"(\S+)[ \t]+\S+[ \t]*(?:→|->)[ \t]*(\S+)")


def _as_changed(title: str) -> str:
    """A title with each "NAME old → new" read as "NAME new": a branch is named for what it
    sets, not for what it replaced ("depth-4", not "depth-3")."""
    return _CHANGED_VALUE.sub(r"\1 \2", title)


def group_slug(titles: list[str], limit: int = 60) -> str:
    """A name for a group of changes that covers all of them: one change keeps its title's
    words; several are joined with "+" (the key words of each, then "+N-more" past three)."""
    titles = [_as_changed(t) for t in titles]
    if len(titles) == 1:
        return slug(titles[0], limit)
    shown = titles[:3] if len(titles) <= 3 else titles[:2]
    parts = [_key_words(t, 3) for t in shown]
    extra = [f"{len(titles) - len(shown)}-more"] if len(titles) > len(shown) else []
    name = "+".join(parts + extra)
    while len(name) > limit and any(len(p) > 8 for p in parts):
        longest = max(range(len(parts)), key=lambda i: len(parts[i]))
        parts[longest] = parts[longest][:-1].rstrip("-")
        name = "+".join(parts + extra)
    return name


# What `group_branch` puts after the prefix: the group's number (two digits or more), then
# `group_slug`'s words (lowercase letters, digits, '-', and '+' between changes).
_GROUP_LEAF = re.compile(r"[0-9]{2,}-[a-z0-9][a-z0-9+-]*")


def group_branch(stem: str, index: int, name: str) -> str:
    """The branch of group `index` (from 1) named `name` (`group_slug`), under `stem`."""
    return f"{stem}{index:02d}-{name}"


def is_group_branch(stem: str, branch: str) -> bool:
    """Whether `branch` has the shape of a name `group_branch` makes under `stem` (one level
    below it, not deeper: `stem` + `NN-slug`). A shape is no proof that finalize wrote it."""
    return branch.startswith(stem) and _GROUP_LEAF.fullmatch(branch[len(stem):]) is not None
