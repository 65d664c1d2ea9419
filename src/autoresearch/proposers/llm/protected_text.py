"""What a log shown to a model must not carry: the text of the protected files.

The crash log tail is the verify command's own output; a traceback through the evaluation quotes
its source, an exception message quotes a value read from a protected config (`invalid literal
for int(): 'hunter2'`), a script prints a protected line in another case. `ProtectedText` is the
one filter for all of it: a log line is hidden when

- it is a protected line (of at least `MIN_HIDDEN_LINE` characters), ignoring case and the
  surrounding blanks, or contains one of at least `MIN_QUOTED_LINE` characters; or
- it contains a *distinctive token* of a protected file: a word or number (letters, digits,
  underscores) of at least `MIN_TOKEN` characters (`MIN_NUMBER` for a number alone, so that a
  year or a count does not hide every timestamp) that occurs in a protected file but nowhere
  the model may look anyway: the in-scope files and their names, program.md, the metric's
  name, Python's keywords and built-in names. Compared ignoring case.

The always-protected configuration (autoresearch.toml, .gitignore) is filtered by its lines
only: its words (`python`, `venv`) are in every traceback and hold nothing secret. A protected
file that is not text (a data split) gives no tokens: its bytes are not words.

What no filter can catch: a command that transforms protected content before printing it
(encodes it, prints it a character per line, or prints a value shorter than a token).
"""

from __future__ import annotations

import builtins
import contextlib
import keyword
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from autoresearch import gitops
from autoresearch.config import ALWAYS_PROTECTED, PROGRAM_NAME
from autoresearch.gitops.runner import GitError
from autoresearch.globs import select
from autoresearch.proposers.base import ProposalContext
from autoresearch.textcheck import is_binary

MAX_PROTECTED_SCAN_BYTES = 4_000_000  # protected text read to hide its lines from logs
MIN_HIDDEN_LINE = 4  # shorter protected lines (`}`, `else:`) are too common to hide
MIN_QUOTED_LINE = 12  # a protected line this long is hidden even inside a longer log line
MIN_TOKEN = 4  # a word this long from a protected file hides the log lines it is in
MIN_NUMBER = 5  # a number alone must be this long (2026, 1000 are in every log)
HIDDEN = "[line hidden: it quotes a protected file]"

_TOKEN = re.compile(r"[^\W_]\w*|_\w+")
_COMMON = frozenset(w.lower() for w in (*keyword.kwlist, *dir(builtins)))


def tokens(text: str) -> set[str]:
    """The words and numbers of `text` long enough to be distinctive, lowercased."""
    found = set()
    for match in _TOKEN.finditer(text):
        word = match.group().lower()
        if len(word) >= (MIN_NUMBER if word.isdigit() else MIN_TOKEN):
            found.add(word)
    return found


@dataclass(frozen=True)
class ProtectedText:
    lines: frozenset[str]  # lowercased, stripped protected lines
    distinctive: frozenset[str]  # lowercased tokens found only in protected files

    @classmethod
    def of(cls, ctx: ProposalContext, seen: Iterable[str] = ()) -> ProtectedText:
        """The protected text of `ctx`'s worktree; `seen`: the texts the model is shown (or may
        open) anyway, whose words are therefore not secrets."""
        lines: set[str] = set()
        found: set[str] = set()
        budget = MAX_PROTECTED_SCAN_BYTES
        for path in _protected_files(ctx):
            try:
                data = (ctx.worktree / path).read_bytes()[:budget]
            except OSError:
                continue
            budget -= len(data)
            text = data.decode("utf-8", errors="replace")
            lines.update(ln.strip().lower() for ln in text.splitlines()
                         if len(ln.strip()) >= MIN_HIDDEN_LINE)
            if path not in ALWAYS_PROTECTED and not is_binary(data):
                found |= tokens(text)
            if budget <= 0:
                break
        if found:
            visible = set(_COMMON)
            for text in (ctx.program, ctx.metric_name, *ctx.scope_files, *seen):
                visible |= tokens(text)
            found -= visible
        return cls(frozenset(lines), frozenset(found))

    def hide(self, text: str) -> str:
        """`text` with every line that carries protected content replaced by a note."""
        if not text or not (self.lines or self.distinctive):
            return text
        lowered = text.lower()
        quoted = [ln for ln in self.lines if len(ln) >= MIN_QUOTED_LINE and ln in lowered]
        out = []
        for line in text.split("\n"):
            low = line.lower()
            if (low.strip() in self.lines or any(q in low for q in quoted)
                    or not self.distinctive.isdisjoint(tokens(line))):
                out.append(HIDDEN)
            else:
                out.append(line)
        return "\n".join(out)


def _protected_files(ctx: ProposalContext) -> list[str]:
    """The protected files of the worktree, program.md aside (it is the brief, shown anyway):
    tracked ones, and those git does not track that the evaluation may read all the same (a
    `.env` shared into the worktree by [verify] share, data a run prepared)."""
    protected = [p for p in ctx.config.all_protected if p != PROGRAM_NAME]
    found = set(select(_walk(ctx.worktree), protected))
    with contextlib.suppress(GitError, OSError):  # not a git worktree: the walk found them
        found.update(select(gitops.tracked_files(ctx.worktree), protected))
    return sorted(p for p in found if p != PROGRAM_NAME)


def _walk(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        rel = Path(dirpath).relative_to(root)
        found += [(rel / f).as_posix() for f in filenames]
    return found
