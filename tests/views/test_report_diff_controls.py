"""A kept change's diff in report.md and report.html: control characters in the repository's own
bytes are shown as markers, never passed to the terminal that `cat`s the report."""

from __future__ import annotations

import re
from pathlib import Path

from tests.views.conftest import autoresearch
from tests.views.ledger_factory import Planned, build_session

# A file that retitles the terminal (OSC), clears it (CSI), does the same in 8-bit C1 form, rings
# the bell and moves the cursor back over what was printed; plus a CRLF file, which is harmless.
HOSTILE = ("TITLE = 1  # \x1b]0;pwned\x07 \x1b[2J \x9b2J \x9d0;c1\x9c bell\x07 over\roverwritten\n")
CRLF = "A = 1\r\nB = 2\r\n"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def test_report_diffs_show_control_characters_as_markers(tmp_path: Path) -> None:
    built = build_session(tmp_path / "repo", plan=[
        Planned("a file with raw escapes", "keep", [9.0, 9.1],
                {"hostile.py": HOSTILE, "crlf.py": CRLF})])
    out = tmp_path / "out"
    proc = autoresearch(built.repo, "report", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr

    markdown = (out / "report.md").read_text()
    assert not CONTROL.search(markdown), [m.group() for m in CONTROL.finditer(markdown)]
    # Each control is visible where it was, the rest of its sequence as plain text.
    assert "+TITLE = 1  # ⟨U+001B⟩]0;pwned⟨U+0007⟩ ⟨U+001B⟩[2J ⟨U+009B⟩2J ⟨U+009D⟩0;c1⟨U+009C⟩" \
        " bell⟨U+0007⟩ over⟨U+000D⟩overwritten" in markdown
    assert "+A = 1\n+B = 2\n" in markdown  # a CRLF line end is no control to flag
    assert "terminal control characters (⟨U+0007⟩, ⟨U+000D⟩, ⟨U+001B⟩, ⟨U+009B⟩, ⟨U+009C⟩, " \
        "⟨U+009D⟩)" in markdown

    page = (out / "report.html").read_text()
    assert not CONTROL.search(page.replace("\n", ""))
    assert ("<b class='bidi' title='a terminal control character, shown instead of obeyed'>"
            "⟨U+001B⟩</b>]0;pwned") in page
    assert "terminal control characters" in page
