"""The edit format a model replies in, its parser, and its applier.

A reply names a file on one line and follows it with a block:

    train.py
    <<<<<<< SEARCH
    LEARNING_RATE = 3e-4
    =======
    LEARNING_RATE = 6e-4
    >>>>>>> REPLACE

`<<<<<<< FILE ... >>>>>>> FILE` gives a whole file (new or small files) and
`<<<<<<< DELETE` / `>>>>>>> DELETE` removes one. Models are sloppy in predictable ways, so the
parser accepts 5-9 `<` and `>` marker characters, code fences around blocks, decorated path lines
(`**train.py**`, `File: train.py`), and a missing path that repeats the previous block's. The
divider is the exception: it must be exactly seven `=` (the standard), because shorter and longer
runs of `=` are ordinary text (an RST or Markdown heading underline). A SEARCH block with a second
divider line is refused rather than guessed at: which of the two splits old from new text is
ambiguous.

The applier finds each SEARCH text as `line_match` does: whole lines exactly, then the same lines
ignoring trailing whitespace, then ignoring indentation (re-indenting the replacement to fit),
in the file's own line endings. An empty SEARCH creates a file but never edits an existing one:
where its text should go is not said. What fails is collected, not raised one by one, so the model gets one message listing every block that failed and why, with the
closest lines of the file as a hint.

Nothing the model may not see is ever read for it. Every block's path is first put in its
canonical form by the `resolve` callable (`repo_paths.canonical_path` by default; the proposer
passes the guardrails' judge, which also checks the file system and the scope/protected rules):
`src/./metric.py` is `src/metric.py` before any rule looks at it, and the blocks' state is keyed
by that form, so two spellings of one file are one file. A path outside the repository, under
`.git/`, through a symlink, or an alias of another name is refused without being read, and the
`read` callable refuses protected, out-of-scope and binary files by raising `PathRefused`. Either
way the block fails with the rule it broke and no hint from the file: no closest lines, and no
"unchanged" verdict that would reveal whether a guessed content equals the file's.

A reply is untrusted text: a block whose new text is not plain text (a NUL, a lone surrogate, a
control character the file did not hold; see `textcheck`) fails with the reason, and the prose
(hypothesis, rationale, a give-up reason) is cleaned before anything records it.
"""

from __future__ import annotations

import difflib
import re
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

from autoresearch.proposers.llm.line_match import Ambiguous, replace_unique, trim_blank
from autoresearch.repo_paths import PathRefused, canonical_path, shown
from autoresearch.textcheck import text_problem
from autoresearch.unicode_controls import clean_prose

# The "closest lines" hint after a SEARCH that matched nothing (`_closest`): its bounds.
HINT_MAX_LINES = 200
HINT_MAX_CHARS = 16_000
HINT_SECONDS = 1.0
HINT_VOTERS = 3  # SEARCH lines that vote through close matches when none matches exactly
HINT_CANDIDATES = 4  # starts compared whole
HINT_EXACT_CHARS = 2_000  # longer texts are compared by the characters they share

_HEAD = re.compile(r"^\s*<{5,9}\s*(SEARCH|FILE|DELETE)\s*$", re.IGNORECASE)
_DIVIDER = re.compile(r"^\s*={7}\s*$")
_TAIL = re.compile(r"^\s*>{5,9}\s*(REPLACE|FILE|DELETE)?\s*$", re.IGNORECASE)
_FENCE = re.compile(r"^\s*(```|~~~)")
_LABEL = re.compile(r"^(?:#+\s*)?(?:file(?:name)?|path)\s*:\s*", re.IGNORECASE)
_HYPOTHESIS = re.compile(r"^\s*[*_#\s]*HYPOTHESIS[*_\s]*:\s*(.*)$", re.IGNORECASE)
_RATIONALE = re.compile(r"^\s*[*_#\s]*RATIONALE[*_\s]*:\s*(.*)$", re.IGNORECASE)
_GIVE_UP = re.compile(r"^\s*[*_#\s]*GIVE[_ ]UP[*_\s]*:\s*(.*)$", re.IGNORECASE)

Kind = Literal["replace", "file", "delete"]

__all__ = ["BlockFailure", "EditApplyError", "EditBlock", "EditFormatError", "PathRefused", "Reply",
           "apply_blocks", "is_inside_repo", "parse_reply", "stated_hypothesis"]


@dataclass(frozen=True)
class EditBlock:
    """One block of a reply; `index` is its 1-based position, for error messages."""

    index: int
    path: str
    kind: Kind
    search: str = ""
    replace: str = ""


@dataclass(frozen=True)
class Reply:
    """A parsed model reply."""

    hypothesis: str
    rationale: str
    blocks: list[EditBlock]
    give_up: str | None = None


@dataclass(frozen=True)
class BlockFailure:
    index: int
    path: str
    reason: str
    hint: str = ""


class EditFormatError(Exception):
    """The reply could not be parsed into blocks."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        lines = ["Your reply could not be parsed:"]
        lines += [f"- {clean_prose(p)}" for p in self.problems]
        return "\n".join(lines)


@dataclass
class EditApplyError(Exception):
    """Some blocks did not apply; `failures` lists each with its reason."""

    failures: list[BlockFailure]
    total: int
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.render())

    def render(self) -> str:
        ok = self.total - len(self.failures)
        lines = [f"{len(self.failures)} of {self.total} edit blocks failed ({ok} applied cleanly):"]
        for f in self.failures:
            lines.append(f"- block {f.index} ({shown(f.path)}): {f.reason}")
            if f.hint:
                lines.append(f.hint)
        lines += self.notes
        return "\n".join(lines)


# --- parsing ------------------------------------------------------------------------------


def _clean_path(line: str) -> str | None:
    """The path a line names, or None when the line does not look like a path."""
    text = _LABEL.sub("", line.strip()).strip()
    text = text.strip("`*_\"' ").rstrip(":").strip("`*_\"' ")
    if text.startswith("#"):
        text = text.lstrip("#").strip()
    if not text or " " in text or len(text) > 300:
        return None
    return text


def _path_before(lines: Sequence[str], head: int, floor: int) -> tuple[str | None, int]:
    """Look upward from a block head (skipping fences and blank lines) for its path line."""
    i = head - 1
    while i >= floor:
        line = lines[i]
        if not line.strip():
            i -= 1
            continue
        if _FENCE.match(line):
            # "```python" carries no path; "```python train.py" does.
            rest = _FENCE.sub("", line).strip().split()
            if len(rest) >= 2 or (len(rest) == 1 and ("/" in rest[0] or "." in rest[0])):
                return _clean_path(rest[-1]), i
            i -= 1
            continue
        return _clean_path(line), i
    return None, head


def parse_reply(text: str) -> Reply:
    """Split a reply into hypothesis, rationale and edit blocks; raise EditFormatError if broken."""
    lines = text.replace("\r\n", "\n").split("\n")
    blocks: list[EditBlock] = []
    problems: list[str] = []
    segments: list[Sequence[str]] = []  # the prose between blocks
    floor = 0  # path lines are searched for only after the previous block's end
    last_path: str | None = None
    i = 0
    while i < len(lines):
        head = _HEAD.match(lines[i])
        if not head:
            if _DIVIDER.match(lines[i]) or _TAIL.match(lines[i]):
                problems.append(
                    f"line {i + 1}: a {lines[i].strip()[:9]!r} marker outside any block "
                    "(each block starts with <<<<<<< SEARCH, FILE or DELETE)"
                )
            i += 1
            continue
        kind_word = head.group(1).upper()
        index = len(blocks) + len(problems) + 1
        path, path_line = _path_before(lines, i, floor)
        segments.append(lines[floor:path_line])
        if path is None:
            path = last_path
        end, body, error = _read_block(lines, i, kind_word)
        if error:
            problems.append(f"block {index}: {error}")
        elif path is None:
            problems.append(
                f"block {index}: no file path before its <<<<<<< {kind_word} line "
                "(put the repo-relative path alone on the line above it)"
            )
        else:
            kind: Kind = {"SEARCH": "replace", "FILE": "file", "DELETE": "delete"}[kind_word]  # type: ignore[assignment]
            search, replace = body
            blocks.append(EditBlock(len(blocks) + 1, path, kind, search, replace))
            last_path = path
        floor = end + 1
        i = end + 1
    if problems:
        raise EditFormatError(problems)
    segments.append(lines[floor:])
    hypothesis, rationale, give_up = _prose(segments)
    return Reply(hypothesis=hypothesis, rationale=rationale, blocks=blocks, give_up=give_up)


def _join(body: list[str]) -> str:
    return "".join(line + "\n" for line in body)


def _read_block(lines: Sequence[str], head: int, kind: str) -> tuple[int, tuple[str, str], str]:
    """Read one block from its head line: (index of its last line, (search, replace), error)."""
    first: list[str] = []
    second: list[str] = []
    current = first
    seen_divider = False
    for j in range(head + 1, len(lines)):
        line = lines[j]
        if _TAIL.match(line):
            if kind == "SEARCH" and not seen_divider:
                return j, ("", ""), "SEARCH block has no ======= line between the old and new text"
            if kind == "SEARCH":
                return j, (_join(first), _join(second)), ""
            return j, ("", _join(first)), ""
        if _HEAD.match(line):
            return j - 1, ("", ""), (
                f"<<<<<<< {kind} block is not closed before the next block starts"
            )
        if kind == "SEARCH" and _DIVIDER.match(line):
            if seen_divider:
                end = _block_end(lines, j)
                return end, ("", ""), (
                    "SEARCH block has more than one ======= line, so where the old text ends is "
                    "ambiguous; if the file itself contains a line of seven '=', choose SEARCH "
                    "lines that avoid it, or rewrite the file with a FILE block"
                )
            seen_divider = True
            current = second
            continue
        current.append(line)
    return len(lines) - 1, ("", ""), (
        f"<<<<<<< {kind} block is never closed (was the reply cut off? make smaller edits)"
    )


def _block_end(lines: Sequence[str], start: int) -> int:
    """The index of the line closing the block that contains line `start` (for error recovery)."""
    for k in range(start + 1, len(lines)):
        if _TAIL.match(lines[k]):
            return k
        if _HEAD.match(lines[k]):
            return k - 1
    return len(lines) - 1


def stated_hypothesis(text: str) -> str:
    """The `HYPOTHESIS:` line of a reply, even one too broken to parse (for the ledger)."""
    for line in text.replace("\r\n", "\n").split("\n"):
        if m := _HYPOTHESIS.match(line):
            return " ".join(clean_prose(m.group(1)).strip(" *_").split())[:200]
    return ""


def _prose(segments: Sequence[Sequence[str]]) -> tuple[str, str, str | None]:
    """Hypothesis, rationale and a give-up reason from the text around the blocks."""
    hypothesis = ""
    give_up: str | None = None
    rationale: list[str] = []
    in_rationale = False
    flat: list[str | None] = [ln for seg in segments for ln in [*seg, None]]
    for line in flat:
        if line is None:
            in_rationale = False  # a rationale ends where a block begins
        elif m := _HYPOTHESIS.match(line):
            hypothesis = hypothesis or m.group(1).strip(" *_")
            in_rationale = False
        elif m := _GIVE_UP.match(line):
            give_up = m.group(1).strip() or "no reason given"
            in_rationale = False
        elif m := _RATIONALE.match(line):
            rationale.append(m.group(1))
            in_rationale = True
        elif in_rationale and not _FENCE.match(line):
            rationale.append(line)
    if not hypothesis:
        # Be lenient: a reply without the label still has a first sentence worth keeping.
        first = segments[0] if segments else []
        prose = [ln.strip(" #*") for ln in first if ln.strip() and not _FENCE.match(ln)]
        hypothesis = prose[0] if prose else ""
    hypothesis = " ".join(clean_prose(hypothesis).split())[:200]
    rationale_text = clean_prose("\n".join(rationale)).strip()[:2000]
    return hypothesis, rationale_text, None if give_up is None else clean_prose(give_up)[:500]


# --- applying -----------------------------------------------------------------------------


def is_inside_repo(path: str) -> bool:
    """True when a repo-relative path, judged as text, stays inside the worktree and outside
    `.git/` (`repo_paths.canonical_path` without a root)."""
    try:
        canonical_path(path)
    except PathRefused:
        return False
    return True


def apply_blocks(
    blocks: Sequence[EditBlock],
    read: Callable[[str], str | None],
    partial: Collection[str] = (),
    resolve: Callable[[str], str] = canonical_path,
) -> dict[str, str | None]:
    """Apply blocks in order; return canonical path -> new content (None = deleted) for the
    files that changed.

    `resolve(path)` returns a block path's canonical form or raises `PathRefused`; `read(path)`
    is called with the canonical form only, and returns the file's current content, None when it
    does not exist, or raises `PathRefused` for a file the model may not touch. `partial` names
    the existing files the model was not shown whole: a FILE block may not replace one (what the
    model did not see would be lost); SEARCH/REPLACE blocks may edit it.
    """
    state: dict[str, str | None] = {}
    original: dict[str, str | None] = {}
    refused: dict[str, str] = {}
    canonical: dict[str, str] = {}
    failures: list[BlockFailure] = []

    def refusal(path: str) -> str | None:
        """Why the block's path may not be touched (None when it may); reads it once."""
        if path in refused:
            return refused[path]
        if path not in canonical:
            try:
                canonical[path] = resolve(path)
            except PathRefused as exc:
                refused[path] = exc.reason
                return exc.reason
        real = canonical[path]
        if real not in state and real not in refused:
            try:
                original[real] = state[real] = read(real)
            except PathRefused as exc:
                refused[real] = exc.reason
        return refused.get(real)

    for block in blocks:
        reason = refusal(block.path)
        if reason is not None:
            # The rule, and nothing about the file: no closest lines, no "unchanged" verdict.
            failures.append(BlockFailure(
                block.index, block.path,
                f"refused: {reason}; this block was not applied (change only the files shown "
                "to you as in scope)",
            ))
            continue
        path = canonical[block.path]
        text = state[path]
        bad_text = None if block.kind == "delete" else text_problem(block.replace, text)
        if bad_text is not None:
            failures.append(BlockFailure(
                block.index, block.path,
                f"refused: the new text is not plain text: {bad_text.removeprefix('its content ')}"
                "; write the character as an escape sequence in the code instead",
            ))
        elif block.kind == "file" and path in partial and original.get(path) is not None:
            failures.append(BlockFailure(
                block.index, block.path,
                "a FILE block would replace the whole file, but you were shown only an excerpt "
                "of it (or none of it): edit it with SEARCH/REPLACE blocks on lines you can see",
            ))
        elif block.kind == "file":
            state[path] = block.replace
        elif block.kind == "delete":
            if text is None:
                failures.append(BlockFailure(block.index, block.path, "cannot delete: no such file"))
            state[path] = None
        else:
            new, failure = _apply_one(block, text)
            if failure is not None:
                failures.append(failure)
            else:
                state[path] = new
    if failures:
        raise EditApplyError(failures, total=len(blocks))
    return {p: c for p, c in state.items() if c != original.get(p)}


def _apply_one(block: EditBlock, text: str | None) -> tuple[str | None, BlockFailure | None]:
    if not block.search.strip():
        if text is None or not text.strip():
            return block.replace, None  # a new (or empty) file: nothing to find, nothing to lose
        # Appending would glue the text onto a last line without a newline, and where the model
        # meant the lines to go is anyone's guess: it must say so.
        return None, BlockFailure(
            block.index, block.path,
            "SEARCH is empty but the file exists: to add lines, SEARCH for the line they "
            "follow and repeat it in REPLACE with the new lines after it; to create a new file "
            "or rewrite a small one whole, use a <<<<<<< FILE block",
        )
    if text is None:
        return None, BlockFailure(
            block.index, block.path,
            "the file does not exist (create it with a <<<<<<< FILE block)",
        )
    result = replace_unique(text, block.search, block.replace)
    if isinstance(result, str):
        return result, None
    if isinstance(result, Ambiguous):
        where = ("occurs {} times" if result.exact
                 else "matches {} places (ignoring whitespace)").format(result.count)
        return None, BlockFailure(
            block.index, block.path,
            f"the SEARCH text {where}; include more surrounding lines so it is unique",
        )
    return None, BlockFailure(
        block.index, block.path,
        "the SEARCH text does not match the file (it must repeat existing lines exactly)",
        _closest(text, block.search),
    )


def _closest(text: str, search: str) -> str:
    """The lines of the file most similar to a failed SEARCH text, as a hint for the model.

    A few of the SEARCH lines each vote for where the text would start, through the file lines
    most like them (difflib's close matches, cheap filters first); only the most voted starts
    are compared whole. Comparing every window whole cost the square of the text per window: a
    model's 600-line SEARCH in a 1,500-line file held the harness for minutes. Only a hint, so
    past `HINT_MAX_LINES`, `HINT_MAX_CHARS` or `HINT_SECONDS` there is none."""
    lines = text.splitlines()
    wanted = trim_blank(search.splitlines())
    if not lines or not wanted or len(lines) > 20_000 or len(wanted) > HINT_MAX_LINES:
        return ""
    n = len(wanted)
    target = "\n".join(s.strip() for s in wanted)
    if len(target) > HINT_MAX_CHARS:
        return ""
    give_up = time.monotonic() + HINT_SECONDS
    stripped = [line.strip() for line in lines]
    where: dict[str, list[int]] = {}
    for i, line in enumerate(stripped):
        where.setdefault(line, []).append(i)
    last_start = max(0, len(lines) - n)
    votes: Counter[int] = Counter()
    voters = [k for k, w in enumerate(wanted) if w.strip()]
    for k in voters:  # the lines the model got right (the usual case): exact, at once
        for j in where.get(wanted[k].strip(), ()):
            votes[min(max(j - k, 0), last_start)] += 1
    if not votes:  # every line a little off: the longest few, through close matches
        for k in sorted(voters, key=lambda k: -len(wanted[k].strip()))[:HINT_VOTERS]:
            if time.monotonic() > give_up:
                return ""
            for match in difflib.get_close_matches(wanted[k].strip(), where, n=3, cutoff=0.6):
                for j in where[match]:
                    votes[min(max(j - k, 0), last_start)] += 1
    best, best_at = 0.0, 0
    for at, _ in votes.most_common(HINT_CANDIDATES):
        window = "\n".join(stripped[at : at + n])
        same = difflib.SequenceMatcher(None, target, window, autojunk=False)
        # ratio() costs the product of the lengths: on a long text, the characters in common.
        ratio = same.ratio() if len(target) <= HINT_EXACT_CHARS else same.quick_ratio()
        if ratio > best:
            best, best_at = ratio, at
    if best < 0.5:
        return ""
    excerpt = "\n".join(lines[best_at : best_at + n])
    return f"  the closest lines in the file ({best_at + 1}-{best_at + n}) are:\n```\n{excerpt}\n```"
