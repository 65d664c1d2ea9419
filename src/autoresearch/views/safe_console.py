"""A rich Console whose text can never act on the terminal it is shown in.

What the views print is largely untrusted: a model's hypothesis, a failed proposal's message,
the verify command's own log tail, file and metric names. A terminal obeys the escape sequences
such text may carry: `ESC ] 0 ; … BEL` retitles the window, `ESC [ 2 J` clears the screen,
`ESC ] 8 ; ; URL` hides a link behind innocent words, the 8-bit C1 forms (U+009B for CSI,
U+009D for OSC) do the same on terminals that honour them, and the bidirectional overrides
reorder what is read. rich passes all of these through (its own clean-up drops only BEL,
backspace, CR, VT and FF).

So every text segment rich produces is cleaned at one place, `SafeConsole.render`, which every
print, table cell and live panel goes through: whole escape sequences are removed, any other
control character (C0 but tab and newline, DEL, C1) is dropped, and a bidirectional control is
shown as a visible marker, ⟨U+202E⟩ (see `unicode_controls`). rich's
own styling is not text but a segment style, applied after this, and its cursor movements (the
live panel's) are control segments, left alone.

When its output is not a terminal (a log file, a pipe, a CI job), a line is printed whole: rich
would otherwise wrap it at 80 columns, breaking a long path or command mid-word, so what a user
copies from a log would carry a line break. Tables still fit the width (`COLUMNS`, else 80).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment

from autoresearch.unicode_controls import clean_prose


def terminal_safe(text: str) -> str:
    """`text` with every escape sequence and control character removed (tab and newline kept)
    and every bidirectional control shown as a marker (⟨U+202E⟩): `clean_prose`, which the
    ledger applies to proposer text as it stores it, applied again to everything else (log
    tails, file names, rows an older autoresearch stored)."""
    return clean_prose(text)


class SafeConsole(Console):
    """A Console that shows untrusted text as text (see the module's doc)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("highlight", False)
        chosen_soft_wrap: bool | None = kwargs.pop("soft_wrap", None)
        super().__init__(**kwargs)
        self._chosen_soft_wrap = chosen_soft_wrap

    @property
    def soft_wrap(self) -> bool:
        """Whether `print` leaves a line unwrapped: as chosen, else whenever the output is not a
        terminal (read at each print: a test runner may swap sys.stdout after this is made)."""
        if self._chosen_soft_wrap is not None:
            return self._chosen_soft_wrap
        return not self.is_terminal

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:
        self._chosen_soft_wrap = value

    def render(self, renderable: RenderableType,
               options: ConsoleOptions | None = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or segment.text.isprintable():
                yield segment
            else:
                yield Segment(terminal_safe(segment.text), segment.style)
