"""Where a SEARCH text lands, and the replacement written in the file's own style: whole lines
only, re-indented in the file's indentation characters, with the file's line endings and BOM."""

from __future__ import annotations

import pytest

from autoresearch.proposers.llm.edits import (
    EditApplyError,
    EditBlock,
    apply_blocks,
    parse_reply,
)

NESTED = "def f(x):\n    if x:\n        return x\n    return 0\n"


def edit(files: dict[str, str], path: str, search: str, replace: str) -> str | None:
    reply = f"HYPOTHESIS: x\n{path}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"
    return apply_blocks(parse_reply(reply).blocks, files.get)[path]


def test_an_exact_hit_inside_a_deeper_line_is_no_hit() -> None:
    # `    return x` is a substring of `        return x`: replacing it there left `y = x * 2` at
    # the block's depth and `return y` outside it, a NameError at run time.
    new = edit({"t.py": NESTED}, "t.py", "    return x\n", "    y = x * 2\n    return y\n")
    assert new == "def f(x):\n    if x:\n        y = x * 2\n        return y\n    return 0\n"
    compile(new or "", "t.py", "exec")


def test_an_exact_hit_must_end_at_a_line_end() -> None:
    # `A = 1` is also the start of `A = 10`; only the whole line is the one meant (a SEARCH
    # without a final newline comes from a caller other than the reply parser).
    block = EditBlock(1, "c.py", "replace", search="A = 1", replace="A = 2")
    assert apply_blocks([block], {"c.py": "A = 10\nA = 1\n"}.get) == {"c.py": "A = 10\nA = 2\n"}


def test_a_tab_indented_reply_on_a_space_indented_file_is_written_with_spaces() -> None:
    new = edit({"t.py": NESTED}, "t.py", "\tif x:\n\t\treturn x\n",
               "\tif not x:\n\t\treturn -x\n\treturn 1\n")
    assert new == "def f(x):\n    if not x:\n        return -x\n    return 1\n    return 0\n"
    compile(new or "", "t.py", "exec")


def test_a_space_indented_reply_on_a_tab_indented_file_is_written_with_tabs() -> None:
    files = {"t.py": "def f(x):\n\tif x:\n\t\treturn x\n\treturn 0\n"}
    new = edit(files, "t.py", "    if x:\n", "    if not x:\n        x = 1\n    if x:\n")
    assert new == "def f(x):\n\tif not x:\n\t\tx = 1\n\tif x:\n\t\treturn x\n\treturn 0\n"


def test_replacement_lines_shallower_than_the_search_keep_their_relative_depth() -> None:
    # The model indented its SEARCH one level too deep (8 for 4): its dedented line goes to 0.
    files = {"t.py": "def f(x):\n    return x\n"}
    new = edit(files, "t.py", "        return x\n", "        return x\n\n\n    def g():\n")
    assert new == "def f(x):\n    return x\n\n\ndef g():\n"


def test_a_crlf_file_keeps_its_line_endings() -> None:
    files = {"crlf.py": "A = 1\r\nB = 2\r\nC = 3\r\n"}
    assert edit(files, "crlf.py", "B = 2\nC = 3\n", "B = 20\nC = 30\nD = 4\n") == (
        "A = 1\r\nB = 20\r\nC = 30\r\nD = 4\r\n")
    # Through the whitespace-tolerant path too.
    assert edit(files, "crlf.py", "  B = 2\n", "  B = 20\n  B2 = 21\n") == (
        "A = 1\r\nB = 20\r\nB2 = 21\r\nC = 3\r\n")


def test_a_file_with_a_byte_order_mark_has_its_first_line_matched_and_the_mark_kept() -> None:
    files = {"bom.py": "\ufeffA = 1\r\nB = 2\r\n"}
    assert edit(files, "bom.py", "A = 1\n", "A = 5\n") == "\ufeffA = 5\r\nB = 2\r\n"
    assert edit(files, "bom.py", "A = 1  \nB = 2\n", "A = 6\n") == "\ufeffA = 6\r\n"


@pytest.mark.parametrize("search", ["", "\n", "   \n\n"])
def test_an_empty_search_on_an_existing_file_is_refused_with_what_to_do(search: str) -> None:
    # Appending glued `B = 2` onto a last line without a newline (`A = 1B = 2`).
    files = {"noeol.py": "A = 1"}
    with pytest.raises(EditApplyError) as info:
        edit(files, "noeol.py", search, "B = 2\n")
    (failure,) = info.value.failures
    assert failure.reason.startswith("SEARCH is empty but the file exists")
    assert "SEARCH for the line they follow" in failure.reason and "FILE block" in failure.reason


def test_an_empty_search_still_creates_a_new_file() -> None:
    assert edit({}, "new.py", "", "X = 1\n") == "X = 1\n"
