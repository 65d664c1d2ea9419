"""The reply format: parsing SEARCH/REPLACE and FILE blocks, and applying them robustly."""

from __future__ import annotations

import pytest

from autoresearch.proposers.llm.edits import (
    EditApplyError,
    EditFormatError,
    PathRefused,
    apply_blocks,
    is_inside_repo,
    parse_reply,
)

FILES = {
    "train.py": "import math\n\nLR = 0.1\n\n\ndef step(x):\n    y = x * LR\n    return y\n",
    "dup.py": "a = 1\nb = 2\na = 1\n",
}


def read(path: str) -> str | None:
    return FILES.get(path)


def apply(text: str) -> dict[str, str | None]:
    return apply_blocks(parse_reply(text).blocks, read)


def test_hypothesis_rationale_and_one_block() -> None:
    reply = parse_reply(
        "HYPOTHESIS: raise the learning rate\n"
        "RATIONALE: the loss curve is flat.\nIt should train faster.\n\n"
        "train.py\n<<<<<<< SEARCH\nLR = 0.1\n=======\nLR = 0.2\n>>>>>>> REPLACE\n"
    )
    assert reply.hypothesis == "raise the learning rate"
    assert reply.rationale == "the loss curve is flat.\nIt should train faster."
    assert [(b.path, b.kind) for b in reply.blocks] == [("train.py", "replace")]
    assert apply_blocks(reply.blocks, read)["train.py"] == FILES["train.py"].replace("0.1", "0.2")


def test_sloppy_markers_fences_and_decorated_paths() -> None:
    text = (
        "**HYPOTHESIS**: tweak\n\n"
        "**`train.py`**\n```python\n<<<<<<<< SEARCH\nLR = 0.1\n=======\nLR = 0.3\n"
        ">>>>>>>> REPLACE\n```\n\n"
        "File: train.py\n<<<<<<< SEARCH\n    return y\n=======\n    return y + 0\n>>>>>>> REPLACE\n"
    )
    edits = apply(text)
    assert "LR = 0.3" in (edits["train.py"] or "") and "return y + 0" in (edits["train.py"] or "")


def test_missing_path_reuses_the_previous_one() -> None:
    text = (
        "HYPOTHESIS: x\ntrain.py\n<<<<<<< SEARCH\nLR = 0.1\n=======\nLR = 0.5\n>>>>>>> REPLACE\n"
        "<<<<<<< SEARCH\nimport math\n=======\nimport math, os\n>>>>>>> REPLACE\n"
    )
    content = apply(text)["train.py"] or ""
    assert "LR = 0.5" in content and "import math, os" in content


def test_whitespace_tolerant_match_reindents_the_replacement() -> None:
    # The model dropped the indentation and added trailing spaces.
    text = (
        "HYPOTHESIS: x\ntrain.py\n<<<<<<< SEARCH\ny = x * LR   \nreturn y\n=======\n"
        "y = x * LR * 2\nreturn y\n>>>>>>> REPLACE\n"
    )
    assert "    y = x * LR * 2\n    return y\n" in (apply(text)["train.py"] or "")


def test_whole_file_new_file_and_delete() -> None:
    text = (
        "HYPOTHESIS: restructure\n"
        "new/mod.py\n<<<<<<< FILE\nVALUE = 1\n>>>>>>> FILE\n"
        "dup.py\n<<<<<<< DELETE\n>>>>>>> DELETE\n"
    )
    assert apply(text) == {"new/mod.py": "VALUE = 1\n", "dup.py": None}


def test_failures_are_listed_together_with_a_hint() -> None:
    text = (
        "HYPOTHESIS: x\n"
        "train.py\n<<<<<<< SEARCH\nLR = 0.15\n=======\nLR = 0.2\n>>>>>>> REPLACE\n"
        "dup.py\n<<<<<<< SEARCH\na = 1\n=======\na = 3\n>>>>>>> REPLACE\n"
        "missing.py\n<<<<<<< SEARCH\nz = 1\n=======\nz = 2\n>>>>>>> REPLACE\n"
        "train.py\n<<<<<<< SEARCH\nimport math\n=======\nimport os\n>>>>>>> REPLACE\n"
    )
    with pytest.raises(EditApplyError) as info:
        apply(text)
    message = info.value.render()
    assert "3 of 4 edit blocks failed" in message
    assert "block 1 (train.py): the SEARCH text does not match" in message
    assert "LR = 0.1" in message  # the closest lines, as a hint
    assert "block 2 (dup.py): the SEARCH text occurs 2 times" in message
    assert "block 3 (missing.py): the file does not exist" in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("train.py\n<<<<<<< SEARCH\nLR = 0.1\n>>>>>>> REPLACE\n", "no ======= line"),
        ("train.py\n<<<<<<< SEARCH\nLR = 0.1\n=======\nLR = 2\n", "never closed"),
        ("<<<<<<< SEARCH\nLR = 0.1\n=======\nLR = 2\n>>>>>>> REPLACE\n", "no file path"),
        ("train.py\n=======\n", "marker outside any block"),
        ("train.py\n<<<<<<< FILE\nx\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n",
         "not closed before the next block"),
    ],
)
def test_malformed_replies_raise_a_clear_error(text: str, problem: str) -> None:
    with pytest.raises(EditFormatError) as info:
        parse_reply("HYPOTHESIS: x\n" + text)
    assert problem in info.value.render()


def test_paths_outside_the_repo_fail_without_being_read() -> None:
    seen: list[str] = []

    def spy(path: str) -> str | None:
        seen.append(path)
        return None

    text = (
        "HYPOTHESIS: x\n../outside.py\n<<<<<<< FILE\nevil\n>>>>>>> FILE\n"
        "/etc/passwd\n<<<<<<< SEARCH\nroot\n=======\nevil\n>>>>>>> REPLACE\n"
        ".git/config\n<<<<<<< FILE\n[core]\n>>>>>>> FILE\n"
    )
    with pytest.raises(EditApplyError) as info:
        apply_blocks(parse_reply(text).blocks, spy)
    assert [f.path for f in info.value.failures] == ["../outside.py", "/etc/passwd", ".git/config"]
    reasons = [f.reason for f in info.value.failures]
    assert reasons[0].startswith("refused: escapes the repository")
    assert reasons[1].startswith("refused: is absolute")
    assert reasons[2].startswith("refused: is inside .git")
    assert seen == []


def test_a_refused_path_fails_with_its_rule_and_no_hint_from_the_file() -> None:
    secret = "TOKEN = 'do-not-leak-123'\nLR = 0.1\n"

    def read(path: str) -> str | None:
        if path == "secrets.py":
            raise PathRefused("protected (matches secrets.py)")
        return FILES.get(path)

    # A near-miss SEARCH would normally get the closest lines as a hint; an exact FILE block
    # would normally be "unchanged". Neither may tell the model anything about the file.
    for text in (
        "HYPOTHESIS: x\nsecrets.py\n<<<<<<< SEARCH\nTOKEN = 'do-not-leak-12'\n=======\n"
        "TOKEN = ''\n>>>>>>> REPLACE\n",
        f"HYPOTHESIS: x\nsecrets.py\n<<<<<<< FILE\n{secret}>>>>>>> FILE\n",
        "HYPOTHESIS: x\nsecrets.py\n<<<<<<< FILE\nsomething else\n>>>>>>> FILE\n",
        "HYPOTHESIS: x\nsecrets.py\n<<<<<<< DELETE\n>>>>>>> DELETE\n",
    ):
        with pytest.raises(EditApplyError) as info:
            apply_blocks(parse_reply(text).blocks, read)
        (failure,) = info.value.failures
        assert failure.reason.startswith("refused: protected (matches secrets.py)")
        assert failure.hint == "" and "do-not-leak" not in info.value.render()


def test_exactly_seven_equals_divide_so_an_rst_underline_is_text() -> None:
    files = {"README.rst": "Title\n=====\n\nBody\n"}
    text = (
        "HYPOTHESIS: retitle\nREADME.rst\n<<<<<<< SEARCH\nTitle\n=====\n=======\n"
        "Better title\n============\n>>>>>>> REPLACE\n"
    )
    (block,) = parse_reply(text).blocks
    assert (block.search, block.replace) == ("Title\n=====\n", "Better title\n============\n")
    assert apply_blocks([block], files.get) == {"README.rst": "Better title\n============\n\nBody\n"}


def test_a_second_divider_in_a_block_is_refused_not_guessed() -> None:
    # The file has a seven-'=' underline: which divider splits old from new is ambiguous.
    text = (
        "HYPOTHESIS: x\nREADME.rst\n<<<<<<< SEARCH\nSection\n=======\n=======\nNew\n"
        "=======\n>>>>>>> REPLACE\n"
    )
    with pytest.raises(EditFormatError) as info:
        parse_reply(text)
    assert "block 1: SEARCH block has more than one ======= line" in info.value.render()
    assert "FILE block" in info.value.render()


@pytest.mark.parametrize(
    ("path", "inside"),
    [("a/b.py", True), ("../x", False), ("/abs", False), (".git/HEAD", False),
     ("a/../../x", False), ("C:/x", False), ("", False)],
)
def test_is_inside_repo(path: str, inside: bool) -> None:
    assert is_inside_repo(path) is inside


def test_give_up_and_missing_hypothesis() -> None:
    assert parse_reply("GIVE_UP: the idea needs a GPU").give_up == "the idea needs a GPU"
    reply = parse_reply("Let me raise LR.\ntrain.py\n<<<<<<< FILE\nx\n>>>>>>> FILE\n")
    assert reply.hypothesis == "Let me raise LR."


def test_unchanged_result_is_empty() -> None:
    text = "HYPOTHESIS: x\ntrain.py\n<<<<<<< SEARCH\nLR = 0.1\n=======\nLR = 0.1\n>>>>>>> REPLACE\n"
    assert apply(text) == {}


def test_labels_after_the_blocks_are_found_and_rationale_stops_at_a_block() -> None:
    reply = parse_reply(
        "RATIONALE: first reason\n"
        "train.py\n<<<<<<< SEARCH\nLR = 0.1\n=======\nLR = 0.2\n>>>>>>> REPLACE\n"
        "That is all.\nHYPOTHESIS: a larger step\n"
    )
    assert reply.hypothesis == "a larger step"
    assert reply.rationale == "first reason"


def test_two_spellings_of_one_file_are_one_file() -> None:
    text = (
        "HYPOTHESIS: x\ntrain.py\n<<<<<<< SEARCH\nLR = 0.1\n=======\nLR = 0.2\n>>>>>>> REPLACE\n"
        "./train.py\n<<<<<<< SEARCH\nimport math\n=======\nimport math, os\n>>>>>>> REPLACE\n"
    )
    edits = apply(text)
    assert list(edits) == ["train.py"]
    assert "LR = 0.2" in (edits["train.py"] or "") and "import math, os" in (edits["train.py"] or "")


@pytest.mark.parametrize(("new", "what"), [
    ("LR = 0.2  # \ud800\n", "lone surrogate U+D800"),
    ("LR = 0.2\0\n", "NUL byte"),
    ("LR = 0.2  # \x1b[31m\n", "U+001B"),
])
def test_a_block_whose_new_text_is_not_text_fails_with_the_reason(new: str, what: str) -> None:
    text = f"HYPOTHESIS: x\ntrain.py\n<<<<<<< SEARCH\nLR = 0.1\n=======\n{new}>>>>>>> REPLACE\n"
    with pytest.raises(EditApplyError) as info:
        apply(text)
    (failure,) = info.value.failures
    assert failure.reason.startswith("refused: the new text is not plain text") and what in (
        failure.reason)
    info.value.render().encode("utf-8")  # the message itself is sendable text


def test_prose_from_a_reply_is_cleaned() -> None:
    reply = parse_reply("HYPOTHESIS: raise \ud800 LR\x07\nRATIONALE: why\0 not\n"
                        "train.py\n<<<<<<< SEARCH\nLR = 0.1\n=======\nLR = 0.2\n>>>>>>> REPLACE\n")
    assert reply.hypothesis == "raise \ufffd LR" and reply.rationale == "why not"
