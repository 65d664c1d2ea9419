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
    # An identifier is one word: "raise LEARNING_RATE to 0.02" keeps its value in three words.
    words = re.findall(r"[A-Za-z0-9_]+(?:\.[0-9]+)?", title)
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
    """A name for a group of changes that covers all of them. Knob changes (tune's titles) are
    named for the knobs they set, each with its last value ("learning-rate-0.02+depth-4"), or
    the knobs alone when the values do not fit ("learning-rate+depth"). Other changes keep their
    title's words when alone; several are joined with "+" (the key words of each, then "+N-more"
    past three). A part is named once however many changes repeat it."""
    settings = [_knob_settings(t) for t in titles]
    if all(s is not None for s in settings) and any(settings):
        return _knob_slug(_last_values([s for s in settings if s is not None]), limit)
    titles = [_as_changed(t) for t in titles]
    if len(titles) == 1:
        return slug(titles[0], limit)
    parts = _unique([_key_words(t, 3) for t in titles])
    return _joined(parts[:3] if len(parts) <= 3 else parts[:2], len(parts), limit)


def _joined(shown: list[str], total: int, limit: int) -> str:
    """`shown` joined with "+", "+N-more" for the `total - len(shown)` left out; the longest
    parts are cut (not below 8 characters) until the name fits `limit`."""
    parts = list(shown)
    extra = [f"{total - len(parts)}-more"] if total > len(parts) else []
    name = "+".join(parts + extra)
    while len(name) > limit and any(len(p) > 8 for p in parts):
        longest = max(range(len(parts)), key=lambda i: len(parts[i]))
        parts[longest] = _trimmed(parts[longest][:-1])
        name = "+".join(parts + extra)
    return name


def _unique(parts: list[str]) -> list[str]:
    return list(dict.fromkeys(parts))


# tune's titles: "tune: NAME old → new, NAME old → new" (a value is source text and may hold
# spaces or commas, so an item ends only where the next "NAME … →" begins). A knob's label is
# its name (an identifier, dotted or dashed in config files), or "file:NAME" when two files
# have a knob of that name.
_TUNE_PREFIX = "tune: "
_KNOB_LABEL = r"(?:[^\s:]+:)?[A-Za-z_][\w.\-]*"
_KNOB_ITEM = re.compile(rf"(?P<name>{_KNOB_LABEL}) (?P<old>.*?) ?(?:→|->) ?(?P<new>.*?)"
                        rf"(?:, (?={_KNOB_LABEL} .*?(?:→|->))|$)")


def _knob_settings(title: str) -> list[tuple[str, str]] | None:
    """The (knob, new value) pairs of a tune title, in its order, leaving out a knob it leaves
    at its value; None for a title that is not tune's."""
    if not title.startswith(_TUNE_PREFIX):
        return None
    body, settings, at = title[len(_TUNE_PREFIX):].strip(), [], 0
    while at < len(body):
        item = _KNOB_ITEM.match(body, at)
        if item is None:
            return None
        if item.group("old").strip() != item.group("new").strip():
            settings.append((item.group("name"), item.group("new").strip()))
        at = item.end()
    return settings


def _last_values(settings: list[list[tuple[str, str]]]) -> dict[str, str]:
    """Each knob with the value the last change set it to, in the order knobs were first set:
    a group sets LEARNING_RATE once, to its final value, however many changes moved it."""
    values: dict[str, str] = {}
    for changes in settings:
        for knob, value in changes:
            values[knob] = value
    return values


def _knob_slug(values: dict[str, str], limit: int) -> str:
    names = [slug(knob, limit) for knob in values]
    with_values = [f"{name}-{_value_slug(v)}" for name, v in zip(names, values.values(),
                                                                   strict=True)]
    for parts in (with_values, names):
        name = "+".join(_unique(parts))
        if len(name) <= limit:
            return name
    names = _unique(names)
    shown = 1
    while (shown < len(names)
           and len("+".join(names[:shown + 1] + [f"{len(names) - shown - 1}-more"])) <= limit):
        shown += 1
    return _joined(names[:shown], len(names), limit)


def _value_slug(value: str, limit: int = 20) -> str:
    """A knob's value as branch-name text that still reads as the number it is: "0.02",
    "1e-05", "minus-0.5" (a leading '-' would read as a separator), "adamw" for "'adamw'"."""
    text = value.strip().lower()
    sign = "minus-" if text.startswith("-") else ""
    text = re.sub(r"[^a-z0-9.]+", "-", text.lstrip("-+"))
    text = re.sub(r"\.{2,}", ".", text).strip("-")
    if text.startswith("."):  # ".5": git refuses no dot here, but "0.5" is what it means
        text = "0" + text
    text = _trimmed(sign + text[:limit]) or "value"
    # git refuses a name ending in ".lock" (its lock files are named so).
    return text[:-len(".lock")] + "-lock" if text.endswith(".lock") else text


def _trimmed(text: str) -> str:
    """No separator or dot at the end of a name's part: git refuses a name ending in '.'."""
    return text.rstrip("-.+")


# What `group_branch` puts after the prefix: the group's number (two digits or more), then
# `group_slug`'s words (lowercase letters, digits, '-', '.' in a knob's value, and '+' between
# changes).
_GROUP_LEAF = re.compile(r"[0-9]{2,}-[a-z0-9][a-z0-9.+-]*")


def group_branch(stem: str, index: int, name: str) -> str:
    """The branch of group `index` (from 1) named `name` (`group_slug`), under `stem`."""
    return f"{stem}{index:02d}-{name}"


def is_group_branch(stem: str, branch: str) -> bool:
    """Whether `branch` has the shape of a name `group_branch` makes under `stem` (one level
    below it, not deeper: `stem` + `NN-slug`). A shape is no proof that finalize wrote it."""
    return branch.startswith(stem) and _GROUP_LEAF.fullmatch(branch[len(stem):]) is not None
