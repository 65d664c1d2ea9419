"""A kept change's diff as the report shows it: every character that would act on a terminal or
reorder a line is shown as a visible marker instead.

report.md is read with `cat` and `less -R` as much as in a Markdown viewer, and the diff is the
repository's own bytes: a file holding `ESC ] 0 ; … BEL` or `ESC [ 2 J` would retitle or clear
the reader's terminal. `autoresearch show` removes such sequences from what it prints; a diff
instead keeps a visible trace of them (⟨U+001B⟩[2J), since that a file holds raw control
characters is itself something a reviewer should see, as with bidirectional controls.
"""

from __future__ import annotations

import re

from autoresearch.unicode_controls import CONTROL, bidi_marker, bidi_warning, reveal_bidi

# CONTROL is every C0 control but tab and newline, DEL and C1. A CR just before a newline is a
# CRLF line end (harmless, and on every line of such a file): it is dropped, not marked.
_CRLF = re.compile(r"\r+\n")


def shown_diff(diff: str) -> str:
    """`diff` with each control character (tab and newline aside) and each bidirectional control
    shown as its marker, ⟨U+001B⟩; nothing else changed."""
    text = _CRLF.sub("\n", diff)
    return reveal_bidi(CONTROL.sub(lambda m: bidi_marker(m.group()), text))


def diff_warning(diff: str) -> str:
    """What the report says above a diff that holds control characters (before `shown_diff`);
    empty when it holds none."""
    found = sorted(set(CONTROL.findall(_CRLF.sub("\n", diff))))
    controls = (f"This holds terminal control characters ({', '.join(map(bidi_marker, found))}), "
                "shown as ⟨U+…⟩ rather than obeyed." if found else "")
    return " ".join(part for part in (controls, bidi_warning(diff)) if part)
