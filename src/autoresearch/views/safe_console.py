"""A rich Console whose text can never act on the terminal it is shown in.

What the views print is largely untrusted: a model's hypothesis, a failed proposal's message,
the verify command's own log tail, file and metric names. A terminal obeys the escape sequences
such text may carry: `ESC ] 0 ; … BEL` retitles the window, `ESC [ 2 J` clears the screen,
`ESC ] 8 ; ; URL` hides a link behind innocent words, the 8-bit C1 forms (U+009B for CSI,
U+009D for OSC) do the same on terminals that honour them, and the bidirectional overrides
reorder what is read. rich passes all of these through (its own clean-up drops only BEL,
backspace, CR, VT and FF).

So every text segment rich produces is cleaned at one place, `SafeConsole.render`, which every
print, table cell and live panel goes through: whole escape sequences are removed, and any other
control character (C0 but tab and newline, DEL, C1) or bidirectional control is dropped. rich's
own styling is not text but a segment style, applied after this, and its cursor movements (the
live panel's) are control segments, left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment

# CSI (ESC [ or U+009B) with its parameters; OSC, DCS, SOS, PM, APC up to their terminator
# (BEL or ST, in either form), or to the next ESC or the line's end when it has none (rich drops
# the BEL before this sees it); any other two- or three-character ESC sequence.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]"
)
# What is left: C0 controls but tab and newline, DEL, C1, and the bidirectional controls
# (embeddings, overrides, isolates, and the implicit marks that can reorder a line).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """`text` with every escape sequence and control character removed (tab and newline kept)."""
    if text.isprintable():
        return text  # the common case, at C speed
    return _CONTROL.sub("", _SEQUENCE.sub("", text))


class SafeConsole(Console):
    """A Console that shows untrusted text as text (see the module's doc)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("highlight", False)
        super().__init__(**kwargs)

    def render(self, renderable: RenderableType,
               options: ConsoleOptions | None = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or segment.text.isprintable():
                yield segment
            else:
                yield Segment(terminal_safe(segment.text), segment.style)
