"""The characters that make text act on a terminal or read differently from what it says, and the
two ways autoresearch neutralises them.

- Escape sequences and control characters act: `ESC ] 0 ; … BEL` retitles a terminal window,
  `ESC [ 2 J` clears it, `ESC ] 8 ; ; URL` hides a link, and the 8-bit C1 forms (U+009B for CSI,
  U+009D for OSC) do the same on terminals that honour them. In prose they carry no meaning, so
  they are removed: a sequence whole (no `[31m` residue), any other control (C0 but tab and
  newline, DEL, C1) on its own.
- Bidirectional controls reorder what is read: U+202E makes `"user‮ ⁦// admin⁩⁦"` read as a
  comment while it runs as a string ("Trojan Source", CVE-2021-42574). Dropping them would hide
  that a text or a file holds them, so they are *revealed*: each becomes a visible marker such as
  ⟨U+202E⟩, which reorders nothing, and a diff that holds any says so (`bidi_warning`), as
  GitHub does.

`clean_prose` (a proposer's hypothesis, rationale, message; a reason or a review finding that
quotes model text) applies both; `reveal_bidi` (code: a diff, a finding's evidence) only the
second, since code keeps its own bytes.
"""

from __future__ import annotations

import re

# The embeddings, overrides and isolates, and the implicit marks that can reorder a line
# (ARABIC LETTER MARK, LEFT-TO-RIGHT MARK, RIGHT-TO-LEFT MARK).
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_BIDI = re.compile("[" + "".join(sorted(BIDI_CONTROLS)) + "]")

# CSI (ESC [ or U+009B) with its parameters; OSC, DCS, SOS, PM, APC up to their terminator
# (BEL or ST, in either form), or to the next ESC or the line's end when it has none; any other
# two- or three-character ESC sequence.
ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]"
)
# What is left once the sequences are gone: C0 controls but tab and newline, DEL, C1.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Anything `clean_prose` changes (ESC is a C0 control, CSI's U+009B a C1 one): text without any
# is returned as it is, in one pass.
_ANYTHING = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff"
                       + "".join(sorted(BIDI_CONTROLS)) + "]")


def bidi_marker(ch: str) -> str:
    """The visible stand-in for one bidirectional control: ⟨U+202E⟩."""
    return f"\u27e8U+{ord(ch):04X}\u27e9"


def reveal_bidi(text: str) -> str:
    """`text` with every bidirectional control shown as its marker (nothing else changed)."""
    return _BIDI.sub(lambda m: bidi_marker(m.group()), text)


def bidi_warning(text: str) -> str:
    """A sentence warning that `text` (a diff, before `reveal_bidi`) holds bidirectional controls,
    naming them; empty when it holds none."""
    found = sorted({ch for ch in text if ch in BIDI_CONTROLS})
    if not found:
        return ""
    names = ", ".join(bidi_marker(ch) for ch in found)
    return (f"This holds bidirectional control characters ({names}), shown as ⟨U+…⟩: they can "
            "make code read differently from how it runs (\"Trojan Source\", CVE-2021-42574).")


def clean_prose(text: str) -> str:
    """Prose from a proposer, safe to store, show and export: escape sequences and control
    characters removed (tab and newline kept; a CR goes too, so CRLF becomes LF), bidirectional
    controls revealed, lone surrogates (JSON lets a reply carry them; no UTF-8 encoder accepts
    them) replaced by U+FFFD."""
    if text.isprintable() or not _ANYTHING.search(text):
        return text  # the common cases: one line, or lines with tabs, at C speed
    text = _SURROGATE.sub("\ufffd", text)
    return reveal_bidi(CONTROL.sub("", ESCAPE_SEQUENCE.sub("", text)))
