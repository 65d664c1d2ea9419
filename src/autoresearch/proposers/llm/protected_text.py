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
  name, Python's keywords and built-in names. Compared ignoring case. A distinctive token that
  looks like a key, a pin or an id rather than a word (letters mixed with digits, `Kq4w`, or
  with a capital inside, `EvalSplit`) is also found *glued* in a longer log word, between
  underscores, digits or a change to a capital (`cache_Kq4w.bin`, `Kq4w2`, `readKq4w`), unless
  the model sees it so glued anyway. A plain word (`data`, `test`, `loss`) hides only the lines
  it is a whole word of: glued, it would hide `test_model`, `_call_impl` and every traceback
  line through a library that uses it; or
- it contains a *distinctive value* of a protected file, anywhere in it: the value of a
  protected line (the text after its first `=` or `:`, quotes stripped) of at least
  `MIN_VALUE` characters, or a whitespace-separated chunk of at least `MIN_CHUNK`. Secrets made
  only of short pieces (`10.0.113.57`, `555-867-5309`, `sk-a1b-c2d-e3f`) have no token long
  enough, and were shown whole. Not distinctive, so as not to hide every log line: a plain
  number (`0.0001`, `1e-05`: hyperparameters printed by every run; a long one is a token
  already), a value whose words are all Python keywords or built-in names (`__name__`), and
  one that is also a value or chunk of what the model may look at anyway.

A log line is matched both as written and as a terminal shows it, without its control
sequences: `\x1b[1mKq4w\x1b[0m` (bold) prints the word `Kq4w`, whose raw token is `1mKq4w`.

The files filtered so: the protected files of the worktree, and the `[verify] inputs` (data the
evaluation reads from outside the repository, held out as much as a protected data split). The
always-protected configuration (autoresearch.toml, .gitignore) is filtered by its lines only:
its words (`python`, `venv`) are in every traceback and hold nothing secret. A file that is not
text (a data split) gives no tokens: its bytes are not words.

What no filter can catch: a command that transforms protected content before printing it
(encodes it, prints it a character per line, or prints a value shorter than a token); nor a
plain word glued to others (`cache_kqzw`), nor a glued word longer than `MAX_GLUED_WORD`.
"""

from __future__ import annotations

import builtins
import contextlib
import keyword
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch import gitops
from autoresearch.config import ALWAYS_PROTECTED, PROGRAM_NAME
from autoresearch.evaluation_inputs import files_named
from autoresearch.gitops.runner import GitError
from autoresearch.guardrails import protected_among
from autoresearch.metrics import without_terminal_codes
from autoresearch.proposers.base import ProposalContext
from autoresearch.textcheck import is_binary

# Protected text read to hide its lines from logs: the smallest files first, each up to its own
# cap, so a large protected data file can neither crowd out the small ones that hold secrets
# (the budget was shared in name order: data/val.txt at 6.4 MB used it all, and secrets.txt,
# sorting after it, was never read) nor be read whole (a 3 GB shared file was, at each repair).
MAX_PROTECTED_FILE_BYTES = 2_000_000
MAX_PROTECTED_SCAN_BYTES = 8_000_000
MIN_HIDDEN_LINE = 4  # shorter protected lines (`}`, `else:`) are too common to hide
MIN_QUOTED_LINE = 12  # a protected line this long is hidden even inside a longer log line
MIN_TOKEN = 4  # a word this long from a protected file hides the log lines it is in
MIN_NUMBER = 5  # a number alone must be this long (2026, 1000 are in every log)
MIN_VALUE = 6  # a protected line's value this long hides the log lines it is in
MIN_CHUNK = 8  # a protected whitespace-separated chunk this long hides the log lines it is in
# A longer token is looked for as a whole word only: the search for a glued word costs, per log
# word, as many slices as the longest one has characters (and a long one is mostly a long chunk
# or value already, found anywhere in a line).
MAX_GLUED_WORD = 128
HIDDEN = "[line hidden: it quotes a protected file]"

_TOKEN = re.compile(r"[^\W_]\w*|_\w+")
_COMMON = frozenset(w.lower() for w in (*keyword.kwlist, *dir(builtins)))
_SEPARATOR = re.compile(r"[=:]")
_DIGIT = re.compile(r"\d")
_LETTER = re.compile(r"[^\W\d_]")
_VALUE_EDGES = " \t,;"  # around a value: `"password": "hunter22",` is the value hunter22
_QUOTES = "\"'`"


def tokens(text: str) -> set[str]:
    """The words and numbers of `text` long enough to be distinctive, lowercased."""
    found = set()
    for word in map(str.lower, set(_TOKEN.findall(text))):  # each once: a data file repeats
        if len(word) >= (MIN_NUMBER if word.isdigit() else MIN_TOKEN):
            found.add(word)
    return found


def _looks_generated(word: str) -> bool:
    """Whether `word`, as written, looks like a key, a pin or an id rather than a word of a
    language or a number: letters mixed with digits (`Kq4w`, `row1`), or a capital that is not
    its initial next to a small letter (`EXTSECRETxq`, `hunTer`, `EvalSplit`)."""
    if not word.isalpha() and _DIGIT.search(word) and _LETTER.search(word):
        return True
    return word != word.upper() and word[1:] != word[1:].lower()  # a small and an inner capital


def generated_words(text: str) -> set[str]:
    """The tokens of `text` that look generated (`_looks_generated`), lowercased."""
    found = set()
    for word in set(_TOKEN.findall(text)):
        if MIN_TOKEN <= len(word) <= MAX_GLUED_WORD and _looks_generated(word):
            found.add(word.lower())
    return found


def _cuts(word: str) -> list[int]:
    """Where `word` may be cut into the words glued in it: at its ends, between a letter, a digit
    and an underscore, and before a capital that follows a small letter (`cache_|Kq4w`,
    `Kq4w|2`, `read|Kq4w`). Two small letters are never cut apart: `data` is no word of
    `metadata`."""
    cuts = [0]
    for at in range(1, len(word)):
        before, after = word[at - 1], word[at]
        if (_kind(before) != _kind(after)) or (before.islower() and after.isupper()):
            cuts.append(at)
    cuts.append(len(word))
    return cuts


def _kind(char: str) -> str:
    return "digit" if char.isdigit() else "underscore" if char == "_" else "letter"


def glued_pieces(word: str, longest: int) -> Iterator[str]:
    """The lowercased pieces of `word` between two of its cuts, of `MIN_TOKEN` to `longest`
    characters: the words that may be glued in it."""
    cuts = _cuts(word)
    for i, start in enumerate(cuts):
        for end in cuts[i + 1 :]:
            if end - start > longest:
                break
            if end - start >= MIN_TOKEN:
                yield word[start:end].lower()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bare(chunk: str) -> str:
    """A chunk or value without the punctuation and quotes around it, lowercased."""
    return chunk.strip(_VALUE_EDGES).strip(_QUOTES).strip(_VALUE_EDGES + "()[]{}").lower()


def values(text: str) -> set[str]:
    """The values and long chunks of `text`'s lines that could identify them, lowercased
    (candidates only: `ProtectedText.of` drops the ones the model may see anyway)."""
    found: set[str] = set()
    for line in text.splitlines():
        if sep := _SEPARATOR.search(line):
            value = line[sep.end():].strip(_VALUE_EDGES).strip(_QUOTES).lower()
            if len(value) >= MIN_VALUE:
                found.add(value)
        found.update(chunk.lower() for chunk in line.split() if len(chunk) >= MIN_CHUNK)
    return {v for v in found if not _is_number(v)
            and not all(w in _COMMON for w in _TOKEN.findall(v))}


def _seen_pieces(texts: Iterable[str]) -> set[str]:
    """The values and chunks of what the model may look at, bare and as written."""
    pieces: set[str] = set()
    for text in texts:
        pieces |= values(text)
        pieces.update(_bare(chunk) for chunk in text.split())
    return pieces


@dataclass(frozen=True)
class ProtectedText:
    lines: frozenset[str]  # lowercased, stripped protected lines
    distinctive: frozenset[str]  # lowercased tokens found only in protected files
    # Lowercased values and chunks found only in protected files, by their first `MIN_VALUE`
    # characters: a log line is searched for all of them in one pass over its positions.
    pieces: dict[str, frozenset[str]] = field(default_factory=dict, hash=False)
    # The distinctive tokens that look generated: also looked for glued in a longer log word.
    glued: frozenset[str] = frozenset()

    @classmethod
    def of(cls, ctx: ProposalContext, seen: Iterable[str] = ()) -> ProtectedText:
        """The protected text of `ctx`'s worktree; `seen`: the texts the model is shown (or may
        open) anyway, whose words are therefore not secrets."""
        lines: set[str] = set()
        found: set[str] = set()
        pieces: set[str] = set()
        generated: set[str] = set()
        budget = MAX_PROTECTED_SCAN_BYTES
        for path, words_count in _smallest_first(_filtered_files(ctx)):
            try:
                with path.open("rb") as f:
                    data = f.read(min(MAX_PROTECTED_FILE_BYTES, budget))
            except OSError:
                continue
            budget -= len(data)
            text = data.decode("utf-8", errors="replace")
            lines.update(ln.strip().lower() for ln in text.splitlines()
                         if len(ln.strip()) >= MIN_HIDDEN_LINE)
            if words_count and not is_binary(data):
                found |= tokens(text)
                pieces |= values(text)
                generated |= generated_words(text)
            if budget <= 0:
                break
        seen = [ctx.program, ctx.metric_name, *ctx.scope_files, *seen]
        if found:
            visible = set(_COMMON)
            for text in seen:
                visible |= tokens(text)
            found -= visible
        glued = _not_seen_glued(generated & found, seen)
        if pieces:
            pieces -= _seen_pieces(seen)
        by_start: dict[str, set[str]] = {}
        for piece in pieces:
            by_start.setdefault(piece[:MIN_VALUE], set()).add(piece)
        return cls(frozenset(lines), frozenset(found),
                   {k: frozenset(v) for k, v in by_start.items()}, frozenset(glued))

    def _quotes_piece(self, line: str) -> bool:
        """Whether the lowercased `line` contains a protected value or chunk anywhere."""
        for at in range(len(line) - MIN_VALUE + 1):
            for piece in self.pieces.get(line[at : at + MIN_VALUE], ()):
                if line.startswith(piece, at):
                    return True
        return False

    def _quotes_glued(self, line: str, longest: int) -> bool:
        """Whether a word of `line` has a generated protected token glued in it."""
        for match in _TOKEN.finditer(line):
            word = match.group()
            if len(word) > MIN_TOKEN and not self.glued.isdisjoint(glued_pieces(word, longest)):
                return True
        return False

    def _carries(self, line: str, quoted: list[str], longest: int) -> bool:
        low = line.lower()
        return (low.strip() in self.lines or any(q in low for q in quoted)
                or not self.distinctive.isdisjoint(tokens(line))
                or (longest > 0 and self._quotes_glued(line, longest))
                or self._quotes_piece(low))

    def hide(self, text: str) -> str:
        """`text` with every line that carries protected content replaced by a note: as written
        (the model reads it so) or as a terminal shows it (the codes may cut a word apart from
        its neighbours: `\x1b[1mKq4w` is the token `1mKq4w`)."""
        if not text or not (self.lines or self.distinctive or self.pieces):
            return text
        shown = without_terminal_codes(text)
        lowered = text.lower() + "\n" + shown.lower()
        quoted = [ln for ln in self.lines if len(ln) >= MIN_QUOTED_LINE and ln in lowered]
        longest = max(map(len, self.glued), default=0)
        out = []
        for line in text.split("\n"):
            plain = without_terminal_codes(line)
            if (self._carries(line, quoted, longest)
                    or (plain != line and self._carries(plain, quoted, longest))):
                out.append(HIDDEN)
            else:
                out.append(line)
        return "\n".join(out)


def _not_seen_glued(words: set[str], seen: Iterable[str]) -> set[str]:
    """`words` but those the model sees glued in a word anyway (`Kq4w_cache` in an in-scope file,
    `NotFound` in `FileNotFoundError`): a log line carrying them so hides nothing secret."""
    if not words:
        return words
    longest = max(map(len, words))
    left = set(words)
    for text in [*seen, " ".join(dir(builtins))]:
        for word in set(_TOKEN.findall(text)):
            if len(word) > MIN_TOKEN:  # a shorter one is a whole token: it is not in `words`
                left.difference_update(glued_pieces(word, longest))
    return left


def _filtered_files(ctx: ProposalContext) -> list[tuple[Path, bool]]:
    """Every file whose content the log must not carry, and whether its words and values count
    (they do not for the always-protected configuration: filtered by its lines only): the
    protected files of the worktree and the `[verify] inputs`."""
    files = [(ctx.worktree / p, p not in ALWAYS_PROTECTED) for p in _protected_files(ctx)]
    files += [(path, True) for path in _input_files(ctx.config.verify.inputs)]
    return files


def _input_files(entries: Iterable[str]) -> list[Path]:
    """The files `[verify] inputs` names (a directory: every file below it), read as
    evaluation_inputs.py lists them. An entry that does not exist names nothing here: the
    session refuses to start or go on without it."""
    return files_named(Path(text.strip()).expanduser() for text in entries)


def _protected_files(ctx: ProposalContext) -> list[str]:
    """The protected files of the worktree, program.md aside (it is the brief, shown anyway):
    tracked ones, and those git does not track that the evaluation may read all the same (a
    `.env` shared into the worktree by [verify] share, data a run prepared)."""
    protected = [p for p in ctx.config.all_protected if p != PROGRAM_NAME]
    found = set(protected_among(_walk(ctx.worktree), protected))
    with contextlib.suppress(GitError, OSError):  # not a git worktree: the walk found them
        found.update(protected_among(gitops.tracked_files(ctx.worktree), protected))
    return sorted(p for p in found if p != PROGRAM_NAME)


def _smallest_first(files: list[tuple[Path, bool]]) -> list[tuple[Path, bool]]:
    """`files` by size, smallest first (unreadable ones and all but regular files dropped):
    secrets sit in small files."""
    sized = []
    for path, words_count in files:
        with contextlib.suppress(OSError):
            info = os.stat(path)
            if stat.S_ISREG(info.st_mode):  # a FIFO would block the read
                sized.append((info.st_size, str(path), path, words_count))
    return [(path, words_count) for _, _, path, words_count in sorted(sized)]


def _walk(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        rel = Path(dirpath).relative_to(root)
        found += [(rel / f).as_posix() for f in filenames]
    return found
