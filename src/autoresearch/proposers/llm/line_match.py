"""Where a SEARCH text is in a file, and its replacement written in the file's own style.

Three tries, the first that finds the text once wins:

1. exactly, but only as whole lines: the hit starts at a line start and ends at a line end.
   A hit inside a line (`    return x` within `        return x`) is no hit, or the
   replacement would land at the wrong indentation and break the code without a word;
2. the same lines ignoring trailing whitespace;
3. the same lines ignoring indentation, the replacement re-indented to where it lands.

What the model writes is plain LF text without a byte order mark, so the file's own conventions
are restored around it: a leading U+FEFF is set aside while matching (or the first line could
never match) and kept, and the replacement's lines end the way most of the file's lines do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

BOM = "\ufeff"
DEFAULT_INDENT_WIDTH = 4  # PEP 8, when neither the file nor the reply says otherwise

__all__ = ["Ambiguous", "replace_unique", "trim_blank"]


@dataclass(frozen=True)
class Ambiguous:
    """The SEARCH text is in the file more than once; `exact` tells which try found them."""

    count: int
    exact: bool


def replace_unique(text: str, search: str, replace: str) -> str | Ambiguous | None:
    """`text` with the one place `search` names replaced by `replace`; `Ambiguous` when it
    names several, None when it names none."""
    bom = BOM if text.startswith(BOM) else ""
    body = text[len(bom):]
    newline = dominant_newline(body)
    replace = replace.replace("\r\n", "\n").replace("\n", newline)
    hits = exact_line_hits(body, search.replace("\r\n", "\n").replace("\n", newline))
    if len(hits) == 1:
        at, end = hits[0]
        return bom + body[:at] + replace + body[end:]
    if len(hits) > 1:
        return Ambiguous(len(hits), exact=True)
    for normalize in (str.rstrip, str.strip):
        result = _replace_lines(body, search, replace, normalize, newline)
        if isinstance(result, str):
            return bom + result
        if result > 1:
            return Ambiguous(result, exact=False)
    return None


def dominant_newline(text: str) -> str:
    """The line ending most of `text`'s lines use (LF on a tie or when there is none)."""
    crlf = text.count("\r\n")
    return "\r\n" if crlf > text.count("\n") - crlf else "\n"


def exact_line_hits(text: str, search: str) -> list[tuple[int, int]]:
    """(start, end) of each occurrence of `search` that begins at a line start and ends at a
    line end (the end of the text counts as one)."""
    hits = []
    at = text.find(search)
    while at >= 0:
        end = at + len(search)
        starts_line = at == 0 or text[at - 1] == "\n"
        ends_line = search.endswith("\n") or end == len(text) or text[end] in "\r\n"
        if starts_line and ends_line:
            hits.append((at, end))
        at = text.find(search, at + 1)
    return hits


def trim_blank(lines: list[str]) -> list[str]:
    """`lines` without the blank lines at either end."""
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _replace_lines(text: str, search: str, replace: str, normalize: Callable[[str], str],
                   newline: str) -> str | int:
    """Replace the unique run of lines equal under `normalize`; else the number of matches."""
    lines = text.splitlines(keepends=True)
    wanted_lines = trim_blank(search.splitlines())
    wanted = [normalize(s) for s in wanted_lines]
    have = [normalize(ln.rstrip("\r\n")) for ln in lines]
    n = len(wanted)
    hits = [i for i in range(len(have) - n + 1) if have[i : i + n] == wanted]
    if len(hits) != 1:
        return len(hits)
    start = hits[0]
    replacement = replace.splitlines(keepends=True)
    if normalize is str.strip:
        replacement = reindent(replacement, wanted_lines, lines[start : start + n],
                               file_lines=lines)
    if replacement and not replacement[-1].endswith("\n") and start + n < len(lines):
        replacement[-1] += newline
    return "".join(lines[:start] + replacement + lines[start + n :])


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _space_width(lines: Sequence[str]) -> int:
    """How many spaces one indentation level takes in `lines`: the smallest indentation of a
    space-indented line (a continuation line aligned at an odd column may fool it, hence the
    bounds)."""
    widths = [len(ind) for ln in lines if ln.strip() and (ind := _indent(ln)) and set(ind) == {" "}]
    return min(max(min(widths), 2), 8) if widths else DEFAULT_INDENT_WIDTH


def _uses_tabs(indent: str, lines: Sequence[str]) -> bool:
    """Whether the file indents with tabs: as `indent` (the matched line's) does, or, when that
    line is not indented, as the file's first indented line does."""
    if indent:
        return indent.startswith("\t")
    first = next((ind for ln in lines if ln.strip() and (ind := _indent(ln))), " ")
    return first.startswith("\t")


def reindent(replacement: list[str], search: list[str], matched: list[str],
             file_lines: Sequence[str] = ()) -> list[str]:
    """The replacement lines moved to where the SEARCH text was found, in the file's own
    indentation characters.

    The model's indentation of its first non-blank SEARCH line (`said`) stands for the file's
    indentation of the line it matched (`real`): each replacement line keeps its indentation
    relative to `said`, re-expressed from `real`. The model's indentation is first converted to
    the file's characters (a tab is one level of the file's spaces, or the other way round), or
    a tab-indented reply on a space-indented file would leave `    \\tif x:`, a TabError."""
    pairs = [(s, m) for s, m in zip(search, matched, strict=False) if s.strip()]
    if not pairs:
        return replacement
    real = _indent(pairs[0][1].rstrip("\r\n"))
    tabs = _uses_tabs(real, file_lines)
    file_width = _space_width(file_lines)
    model_width = _space_width([*search, *replacement])

    def in_file_style(indent: str) -> str:
        if tabs:  # the model's runs of spaces become tabs, a level each
            levels, rest = divmod(len(indent.replace("\t", " " * model_width)), model_width)
            return "\t" * levels + " " * rest
        return indent.replace("\t", " " * file_width)

    said = in_file_style(_indent(pairs[0][0]))
    out = []
    for line in replacement:
        if not line.strip():
            out.append(line)
            continue
        own = in_file_style(_indent(line))
        body = line.lstrip(" \t")
        if own.startswith(said):  # as deep as the first line or deeper: keep the extra depth
            out.append(real + own[len(said):] + body)
        elif said.startswith(own):  # shallower: take the same depth off the file's indentation
            out.append(real[: max(0, len(real) - (len(said) - len(own)))] + body)
        else:  # neither (mixed characters): the first line's depth is the safest guess
            out.append(real + body)
    return out
