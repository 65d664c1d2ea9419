"""Markers tune cannot use, and what `check` and `run` say about them.

A `# knob:` marker makes a knob only on a knob line of a UTF-8 file that is not JSON. Anywhere
else (`X += 1`, a `; knob:` marker where `;` starts no comment, a JSON file or a notebook, a
Latin-1 file) it is dropped, and a dropped marker must not go unsaid: with no knob at all it is
the error (`unusable_markers_error`), beside other knobs it is named as ignored
(`ignored_markers`). Finding such markers and wording those messages is this module's one job.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from autoresearch.proposers.knob_files import files_with_markers, texts_with_markers
from autoresearch.proposers.knob_json import JSON_WHY, json_fix
from autoresearch.proposers.knob_lines import (
    Dialect,
    assignment_sites,
    comment_start,
    dialect_name,
    dialect_of,
    is_json,
    marker_spec,
    python_lines,
    source_lines,
)
from autoresearch.proposers.knobs import KnobError

# The forms a knob line may take, for messages about a marker on a line of another form.
KNOB_LINE_FORMS = ("`NAME = value`, `NAME: value`, or in a Makefile `NAME := value` / "
                   "`NAME ?= value` (in Python: `NAME = literal` or `NAME: type = literal`)")
# A marker's spec in a JSON file, wherever the user put it: a `//` or `#` comment, a string.
_JSON_MARKER = re.compile(r"\bknob:\s*(?P<spec>[a-z]+\([^)\n]*\))")
# The name on a JSON line (`"lr": 0.001,`) or a notebook's code line (`"LR = 0.02\n",`).
_JSON_NAME = re.compile(r'[ \t]*"(?P<name>[A-Za-z_][\w.\-]*)(?:"[ \t]*:|[ \t]*[=:])')


def stray_markers(text: str, dialect: Dialect) -> list[tuple[int, str]]:
    """(0-based index, line) of each `# knob: <spec>` comment on a line that is not a knob line
    (`X += 1`, `X != cmd`, a call): the marker is there, but there is no value to rewrite."""
    marked = {s.index for sites in assignment_sites(text, dialect).values() for s in sites
              if s.marker is not None}
    parsed = python_lines(text) if dialect == "python" else None
    in_strings = parsed.in_strings if parsed is not None else frozenset()
    found = []
    for index, line in enumerate(source_lines(text)):
        raw = line.rstrip("\r\n")
        if index in marked or index in in_strings or "knob:" not in raw:
            continue  # a marker inside a string literal is text, not a comment
        cut = comment_start(raw, dialect)
        spec = marker_spec(raw[cut:]) if cut < len(raw) else None
        if spec and re.match(r"[a-z]+\(", spec):  # a spec such as choice(4, 8), not prose
            found.append((index, raw.strip()))
    return found


# A `; knob: spec` marker after a value: a comment in INI only.
_SEMICOLON_MARKER = re.compile(r"[ \t];[ \t]*knob:[ \t]*[a-z]+\(")


def semicolon_markers(text: str, dialect: Dialect) -> list[tuple[int, str]]:
    """(0-based index, line) of each `; knob: <spec>` marker in a file whose syntax has no `;`
    comments (all but INI; in Python it is no valid line): the marker is part of the value."""
    if dialect in ("ini", "python"):
        return []
    found = []
    for index, line in enumerate(source_lines(text)):
        raw = line.rstrip("\r\n")
        if "knob:" in raw and _SEMICOLON_MARKER.search(raw[:comment_start(raw, dialect)]):
            found.append((index, raw.strip()))
    return found


def _stray_markers(root: Path, files: Sequence[str]) -> list[tuple[str, str]]:
    """("file:line", line) of each `# knob:` marker on a line that is not a knob line."""
    return [(f"{rel}:{i + 1}", line) for rel, text in texts_with_markers(root, files)
            if not is_json(rel) for i, line in stray_markers(text, dialect_of(rel))]


def _semicolon_markers(root: Path, files: Sequence[str]) -> list[tuple[str, str]]:
    """("file:line", the file's kind) of each `; knob:` marker in a file where `;` starts no
    comment (anything but INI): it reads as part of the value, and no knob is made of it."""
    return [(f"{rel}:{i + 1}", dialect_name(dialect_of(rel)))
            for rel, text in texts_with_markers(root, files) if not is_json(rel)
            for i, _ in semicolon_markers(text, dialect_of(rel))]


def _json_markers(root: Path, files: Sequence[str]) -> list[tuple[str, str]]:
    """("file:line", how to tune it instead) of each knob marker in an in-scope JSON file,
    however it was written there."""
    found = []
    for rel, text in texts_with_markers(root, files):
        if not is_json(rel):
            continue
        for i, line in enumerate(source_lines(text)):
            marker = _JSON_MARKER.search(line)
            if marker:
                named = _JSON_NAME.match(line)
                name = named.group("name") if named else "NAME"
                found.append((f"{rel}:{i + 1}", json_fix(name, marker.group("spec"), rel, text)))
    return found


def _markers_not_utf8(root: Path, files: Sequence[str]) -> list[str]:
    """The in-scope files that mention `knob:` but are not UTF-8 text."""
    return [rel for rel, text in files_with_markers(root, files) if text is None]


def unusable_markers_error(root: Path, files: Sequence[str]) -> KnobError | None:
    """Why no knob was found when an in-scope file holds a marker tune cannot use (the first
    kind found, in this order: another kind of line, a `;` marker, a JSON file, a file that is
    not UTF-8); None when there is no such marker."""
    stray = _stray_markers(root, files)
    if stray:
        where, line = stray[0]
        return KnobError(
            "the tune proposer found no knobs to tune: [knobs] declares none, and the "
            f"`# knob:` marker at {where} is on a line it cannot rewrite: {line}"
            + (f" (and {len(stray) - 1} more)" if len(stray) > 1 else ""),
            where=where,
            fix=f"write the knob's line in one of the forms {KNOB_LINE_FORMS}, the value a "
            "single literal (`+=` appends and `!=` runs a shell: neither sets a value)",
        )
    semicolon = _semicolon_markers(root, files)
    if semicolon:
        where, kind = semicolon[0]
        return KnobError(
            "the tune proposer found no knobs to tune: [knobs] declares none, and the "
            f"`; knob:` marker at {where} is no comment: in {kind} `;` is part of the value "
            "(only an INI file's `;` starts a comment)",
            where=where,
            fix="write the marker after `#` instead: `KEY: value  # knob: ...`",
        )
    in_json = _json_markers(root, files)
    if in_json:
        where, fix = in_json[0]
        return KnobError(
            "the tune proposer found no knobs to tune: [knobs] declares none, and the "
            f"`knob:` marker at {where} is in a JSON file, where tune cannot tune a value: "
            f"{JSON_WHY}"
            + (f" (and {len(in_json) - 1} more such marker(s))" if len(in_json) > 1 else ""),
            where=where,
            fix=fix,
        )
    unreadable = _markers_not_utf8(root, files)
    if unreadable:
        return KnobError(
            "the tune proposer found no knobs to tune: [knobs] declares none, and "
            f"{unreadable[0]} has `# knob:` markers but is not UTF-8 text, so tune can "
            "neither read nor rewrite its lines"
            + (f" (and {len(unreadable) - 1} more such file(s))" if len(unreadable) > 1
               else ""),
            where=unreadable[0],
            fix=f"save {unreadable[0]} as UTF-8 (e.g. iconv -f latin1 -t utf-8), then commit "
                "it")
    return None


def ignored_markers(root: Path, files: Sequence[str]) -> list[str]:
    """Each marker in `files` that is no knob, with why, for the line naming the knobs: beside
    other knobs these were dropped without a word."""
    unused = [f"{where} (not a line tune can rewrite: {line.strip()[:60]})"
              for where, line in _stray_markers(root, files)]
    unused += [f"{where} (`;` starts no comment in {kind}: write `# knob:`)"
               for where, kind in _semicolon_markers(root, files)]
    unused += [f"{where} (in a JSON file, where tune cannot tune a value)"
               for where, _ in _json_markers(root, files)]
    unused += [f"{rel} (not UTF-8 text)" for rel in _markers_not_utf8(root, files)]
    return unused
