"""What a proposed file content may hold: text, never binary or bytes posing as text.

A model's reply is untrusted bytes. JSON lets it carry lone surrogates (`\\ud800`, which no UTF-8
encoder accepts: writing such a file, or storing the text in SQLite, raises), NUL bytes (binary
content that git would store and the verify command would run) and control characters that make
code read differently from how it runs (a backspace, or the bidirectional overrides of "Trojan
Source", CVE-2021-42574). An agent's edit is bytes on disk, which may not be UTF-8 at all.

The policy, applied to every proposal before anything is written or committed:
- proposed content must be valid UTF-8 text: no lone surrogate, no NUL, no invalid byte;
- the C0 control characters other than tab, newline, carriage return, form feed and vertical tab,
  DEL, and the bidirectional embedding/override/isolate characters, are refused when the change
  adds them: a file that already holds one (an ANSI escape in a string, say) may keep it;
- a file that was binary before the change (NUL bytes or not UTF-8) may stay binary when an agent
  rewrites it; a new binary file, or a text file turned binary, is refused. Generate binary
  artifacts in the verify command, not in a proposal.

Prose a proposer supplies (a hypothesis, a rationale, an error it reports) is not refused but
cleaned by `unicode_controls.clean_prose`, since it is only recorded and displayed.
"""

from __future__ import annotations

import unicodedata

# Controls that plain text legitimately holds.
_TEXT_CONTROLS = frozenset("\t\n\r\f\v")
# Bidirectional embeddings, overrides and isolates (the "Trojan Source" characters).
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
BINARY_SNIFF_BYTES = 8000  # git's own test: a NUL in the first 8000 bytes means binary


def _suspicious(ch: str) -> bool:
    code = ord(ch)
    return ((code < 0x20 and ch not in _TEXT_CONTROLS) or code == 0x7F or ch in _BIDI
            or 0xD800 <= code <= 0xDFFF)


def _where(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    return f"line {line}"


def _describe(ch: str) -> str:
    code = ord(ch)
    if code == 0:
        return "a NUL byte (binary content)"
    if 0xD800 <= code <= 0xDFFF:
        return f"the lone surrogate U+{code:04X} (not valid UTF-8: bytes posing as text)"
    name = unicodedata.name(ch, "")
    return f"the control character U+{code:04X}" + (f" ({name})" if name else "")


def text_problem(new: object, old: str | None = None) -> str | None:
    """Why `new` may not be written as a text file replacing `old` (None: it may)."""
    if not isinstance(new, str):
        return f"its content is not text (a {type(new).__name__}); a proposal carries text"
    already: set[str] | None = None  # the suspicious characters `old` holds, when needed
    for index, ch in enumerate(new):
        if not _suspicious(ch):
            continue
        if ord(ch) != 0 and not 0xD800 <= ord(ch) <= 0xDFFF and old is not None:
            if already is None:
                already = {c for c in set(old) if _suspicious(c)}
            if ch in already:
                continue  # the file held it before the change
        return (f"its content holds {_describe(ch)} at {_where(new, index)}; only plain "
                "text may be proposed")
    return None


def is_binary(data: bytes) -> bool:
    """Binary by git's test (a NUL early on), or bytes that are not UTF-8."""
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def bytes_problem(new: bytes, old: bytes | None) -> str | None:
    """Why the bytes an agent left in a file may not be committed over `old` (None: they may)."""
    if old is not None and is_binary(old):
        return None  # binary before: it may stay binary
    try:
        text = new.decode("utf-8")
    except UnicodeDecodeError as exc:
        was = "a new file" if old is None else "a text file before"
        return (f"is not UTF-8 text (byte 0x{new[exc.start]:02x} at offset {exc.start}) but was "
                f"{was}; only text may be proposed")
    return text_problem(text, None if old is None else old.decode("utf-8"))
