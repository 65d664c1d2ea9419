"""Context assembly: what the model sees, within budget, and what it must never see."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from autoresearch.config import Config, parse_config
from autoresearch.guardrails import Rules
from autoresearch.proposers.llm.context import (
    build_context,
    estimate_tokens,
    excerpt,
    visible_diff,
    visible_files,
)
from autoresearch.proposers.llm.protected_text import HIDDEN
from tests.llm.conftest import MakeCtx, make_config, summary


def test_program_scope_files_and_history_are_shown(make_ctx: MakeCtx) -> None:
    history = [
        summary(2, "keep", "X = 5", 4.0, -12.0, metrics={"score": 4.0, "test_acc": 0.93}),
        summary(3, "discard", "SCALE = 0.99", 3.99, -0.01, reason="within noise"),
        summary(4, "crash", "import numpy", None, None, reason="exit code 1"),
    ]
    ctx = make_ctx(history=history, diff="diff --git a/target.py b/target.py\n-X = 3.0\n+X = 5\n")
    c = build_context(ctx)
    assert "Minimise the score" in c.stable
    assert "### target.py (whole file" in c.stable and "SCALE = 1.0" in c.stable
    assert "### lib/util.py" in c.stable
    assert "#3 discard" in c.volatile and "within noise" in c.volatile
    assert "Near-misses" in c.volatile  # #3 improved, but not by enough
    assert "Best kept experiments" in c.volatile and "#2 keep" in c.volatile
    assert "+X = 5" in c.volatile


def test_protected_files_and_heldout_metrics_never_appear(make_ctx: MakeCtx) -> None:
    history = [summary(2, "keep", "X = 5", 4.0, -12.0, metrics={"score": 4.0, "test_acc": 0.93},
                       reason="kept; test_acc=0.93")]
    crash = "Traceback\nValueError: boom\nheld-out: test_acc: 0.91\nscore: 3.0"
    diff = (
        "diff --git a/secrets.txt b/secrets.txt\n+TOKEN=do-not-leak-123\n"
        "diff --git a/target.py b/target.py\n+X = 5\n"
    )
    c = build_context(make_ctx(history=history, crash=crash, diff=diff))
    everything = c.stable + c.volatile
    assert "do-not-leak-123" not in everything
    assert "print('score:'" not in everything  # score.py is protected
    assert "secrets.txt" not in c.stable
    assert "test_acc" not in everything and "0.93" not in everything and "0.91" not in everything
    assert "ValueError: boom" in everything and "score: 3.0" in everything
    assert "+X = 5" in everything


def test_experiments_running_in_other_slots_reach_the_model(make_ctx: MakeCtx) -> None:
    import dataclasses

    from autoresearch.proposers.base import InFlight

    alone = build_context(make_ctx())
    assert "Running now in other slots" not in alone.volatile  # a serial session: no section
    ctx = dataclasses.replace(make_ctx(), in_flight=(InFlight("t-0007", "raise LR to 0.05"),))
    c = build_context(ctx)
    assert "Running now in other slots" in c.volatile
    assert "- t-0007: raise LR to 0.05" in c.volatile


def test_stuck_flag_and_crash_log_reach_the_model(make_ctx: MakeCtx) -> None:
    c = build_context(make_ctx(stuck=True, crash="RuntimeError: CUDA out of memory"))
    assert "You are stuck" in c.volatile
    assert "CUDA out of memory" in c.volatile


def test_budget_is_respected_and_large_files_are_excerpted(make_ctx: MakeCtx,
                                                           worktree: Path) -> None:
    body = "\n".join(f"def f{i}(x):\n    return x + {i}  # filler filler filler" for i in range(3000))
    (worktree / "target.py").write_text("LEARNING_RATE = 0.1\n" + body + "\nEPOCHS = 3\n")
    history = [summary(i, "discard", f"idea {i} " + "words " * 20, 10.0, 1.0)
               for i in range(2, 300)]
    c = build_context(make_ctx(history=history), budget_tokens=8_000)
    assert c.tokens <= 8_000 * 1.05
    assert any("target.py: excerpt" in n for n in c.notes)
    assert "EXCERPT" in c.stable and "LEARNING_RATE = 0.1" in c.stable and "EPOCHS = 3" in c.stable
    assert "not shown" in c.stable
    assert "#299 discard" in c.volatile  # the most recent survive trimming
    assert "#2 discard" not in c.volatile


def test_excerpt_keeps_changed_lines_and_marks_gaps() -> None:
    content = "\n".join(f"line {i}" for i in range(1, 1001))
    text, shown = excerpt(content, 2_000, focus=[500])
    assert "line 1\n" in text and "line 500" in text
    assert "⋮ [lines 41-" in text and shown < 1000
    assert estimate_tokens(text) * 4 <= 2_000 + 200


def test_agent_context_lists_files_instead_of_content(make_ctx: MakeCtx) -> None:
    c = build_context(make_ctx(make_config()), include_files=False)
    assert "- target.py" in c.stable and "SCALE = 1.0" not in c.stable
    assert "- secrets.txt" not in c.stable


def test_overlay_shows_the_candidate(make_ctx: MakeCtx) -> None:
    c = build_context(make_ctx(), overlay={"target.py": "X = 99\n", "lib/new.py": "NEW = 1\n",
                                           "secrets.txt": "leak"})
    assert "X = 99" in c.stable and "NEW = 1" in c.stable and "leak" not in c.stable


# --- every road to protected content (issue 9) ---------------------------------------------


def test_an_in_scope_symlink_to_a_protected_file_is_never_read(make_ctx: MakeCtx,
                                                               worktree: Path) -> None:
    os.symlink("../secrets.txt", worktree / "lib" / "peek.py")  # in scope (lib/*.py)
    ctx = make_ctx()
    ctx = dataclasses.replace(ctx, scope_files=[*ctx.scope_files, "lib/peek.py"])
    assert "lib/peek.py" not in visible_files(ctx)
    c = build_context(ctx)
    assert "do-not-leak-123" not in c.stable + c.volatile
    # Nor through a repair's overlay, whatever its keys look like.
    c = build_context(ctx, overlay={"lib/peek.py": "TOKEN=do-not-leak-123\n",
                                    "./secrets.txt": "TOKEN=do-not-leak-123\n"})
    assert "do-not-leak-123" not in c.stable


def test_the_diff_is_an_allowlist_of_visible_files() -> None:
    rules = Rules(scope=["target.py", "lib/*.py"], protected=["score.py", "secrets.txt"])
    sections = {
        "target.py": "diff --git a/target.py b/target.py\n+X = 5\n",
        "protected": "diff --git a/secrets.txt b/secrets.txt\n+TOKEN=do-not-leak-1\n",
        "quoted": 'diff --git "a/lib/caf\\303\\251.py" "b/lib/caf\\303\\251.py"\n+leak-2\n',
        "spaces": "diff --git a/lib/a b.py b/lib/a b.py\n+fine\n",  # in scope: shown
        "renamed": "diff --git a/lib/a.py b/secrets.txt\n+leak-4\n",
        "dotted": "diff --git a/lib/../secrets.txt b/lib/../secrets.txt\n+leak-5\n",
    }
    shown = visible_diff("".join(sections.values()), rules)
    assert shown == sections["target.py"] + sections["spaces"]


def test_log_lines_that_quote_a_protected_file_are_hidden(make_ctx: MakeCtx,
                                                          worktree: Path) -> None:
    crash = ("Traceback (most recent call last):\n"
             '  File "score.py", line 2, in <module>\n'
             "    print('score:', target.f(target.X))\n"
             "ValueError: boom\n"
             "env dump: TOKEN=do-not-leak-123 HOME=/root\n")
    c = build_context(make_ctx(crash=crash))
    assert "ValueError: boom" in c.volatile and 'File "score.py", line 2' in c.volatile
    assert "target.f(target.X)" not in c.volatile and "do-not-leak-123" not in c.volatile
    assert c.volatile.count("[line hidden: it quotes a protected file]") == 2


def test_log_lines_carrying_protected_words_in_any_case_are_hidden(make_ctx: MakeCtx,
                                                                   worktree: Path) -> None:
    (worktree / "secrets.txt").write_text("SEED_KEY=hunter2\nANSWER = 'paris-7c4e'\n")
    crash = ("Traceback (most recent call last):\n"
             '  File "/usr/lib/python3.11/site-packages/numpy/core.py", line 9, in load\n'
             "ValueError: invalid literal for int() with base 10: 'hunter2'\n"  # a value, quoted
             "hunter2\n"  # a bare value
             "ANSWER = 'PARIS-7C4E'\n"  # a protected line, upper-cased
             "PRINT('SCORE:', TARGET.F(TARGET.X))\n"  # the evaluation's line, upper-cased
             "step 2026: loss 0.5 at 12:00\n"  # words the model may see anyway, short numbers
             "ValueError: boom\n")
    c = build_context(make_ctx(crash=crash))
    assert c.volatile.count(HIDDEN) == 4
    for secret in ("hunter2", "paris", "7c4e", "TARGET.F(TARGET.X)"):
        assert secret.lower() not in c.volatile.lower()
    for kept in ("Traceback (most recent call last):", "site-packages/numpy/core.py",
                 "step 2026: loss 0.5", "ValueError: boom"):
        assert kept in c.volatile


def test_a_protected_glob_in_another_case_hides_the_files_content_too(
        make_ctx: MakeCtx, worktree: Path) -> None:
    # `Secrets2.txt` protects `secrets2.txt` from edits (case-folded), but the crash-log filter
    # listed protected files case-sensitively, and its content reached the model verbatim.
    (worktree / "secrets2.txt").write_text("api = CASESECRETv991x\n")
    config = parse_config({**make_config().model_dump(mode="json", exclude_defaults=True),
                           "protected": ["score.py", "Secrets2.txt"]})
    c = build_context(make_ctx(config, crash="Traceback:\napi = CASESECRETv991x\nboom\n"))
    assert "casesecretv991x" not in c.volatile.lower() and HIDDEN in c.volatile


def test_a_large_protected_file_does_not_crowd_out_the_small_ones(make_ctx: MakeCtx,
                                                                   worktree: Path) -> None:
    # The scan's budget was spent in name order: data/val.txt (6.4 MB) used it all, so
    # secrets.txt, sorting after it, was never read, and its token reached the model verbatim.
    # Protected files far larger than any budget (shared 3 GB data splits, sorting first) are
    # read only as far as their own cap: each was read whole, at each repair.
    import tracemalloc

    (worktree / "data").mkdir()
    (worktree / "data" / "val.txt").write_text(
        "".join(f"validation sentence number {i} of the held-out split\n" for i in range(120_000)))
    for name in ("huge-1.bin", "huge-2.bin", "huge-3.bin", "huge-4.bin"):
        with (worktree / "data" / name).open("wb") as f:
            f.truncate(3 * 1024**3)  # sparse: no disk used
    config = parse_config({**make_config().model_dump(mode="json", exclude_defaults=True),
                           "protected": ["data/*", "score.py", "secrets.txt"]})
    crash = "TOKEN=do-not-leak-123\ntoken=DO-NOT-LEAK-123\nValueError: boom\n"
    tracemalloc.start()
    c = build_context(make_ctx(config, crash=crash))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "do-not-leak-123" not in c.volatile.lower() and "ValueError: boom" in c.volatile
    assert peak < 200 * 1024**2, f"{peak / 1e6:.0f} MB held to read the protected files"


def test_a_protected_word_the_model_sees_in_scope_is_not_hidden(make_ctx: MakeCtx,
                                                                 worktree: Path) -> None:
    # `helper` is in lib/util.py (in scope): a log line naming it hides nothing secret.
    (worktree / "secrets.txt").write_text("helper = 'hunter2'\n")
    c = build_context(make_ctx(crash="  File 'lib/util.py', line 2, in helper\nhunter2 leaked\n"))
    assert "in helper" in c.volatile and "hunter2" not in c.volatile


def test_protected_values_made_of_short_pieces_are_hidden(make_ctx: MakeCtx,
                                                          worktree: Path) -> None:
    # No word of these is long enough to be a distinctive token: each was shown whole.
    (worktree / "secrets.txt").write_text(
        "DB_HOST=10.0.113.57\nPHONE: '555-867-5309'\nAPI_KEY=sk-a1b-c2d-e3f\n"
        "ROUTE 10.9.8.7/24 gw\nLR = 0.0001\nFAST = True\n")
    crash = ("connecting to 10.0.113.57 port 5432\n"
             "call 555-867-5309 for help\n"
             "ValueError: SK-A1B-C2D-E3F\n"  # a value, in another case
             "route add 10.9.8.7/24\n"  # a long chunk of a line without `=`
             # Common values (a plain number, a boolean) hide nothing.
             "lr 0.0001 at epoch 3, True\n"
             "ValueError: boom\n")
    c = build_context(make_ctx(crash=crash))
    for secret in ("10.0.113.57", "555-867-5309", "sk-a1b-c2d-e3f", "10.9.8.7/24"):
        assert secret not in c.volatile.lower()
    assert c.volatile.count(HIDDEN) == 4
    assert "lr 0.0001 at epoch 3, True" in c.volatile and "ValueError: boom" in c.volatile


def test_a_protected_value_the_model_sees_in_scope_is_not_hidden(make_ctx: MakeCtx,
                                                                  worktree: Path) -> None:
    (worktree / "secrets.txt").write_text("MODE = 'x-y-z-1'\nHOST = 10.1.1.1:80\n")
    (worktree / "lib" / "util.py").write_text("MODE = 'x-y-z-1'  # the same value, in scope\n")
    c = build_context(make_ctx(crash="mode x-y-z-1 on 10.1.1.1:80\n"))
    assert "mode x-y-z-1 on" not in c.volatile  # 10.1.1.1:80 is only in the protected file
    c = build_context(make_ctx(crash="mode x-y-z-1\n"))
    assert "mode x-y-z-1" in c.volatile


def metric_config(**metric: object) -> Config:
    return parse_config({
        "scope": ["target.py", "lib/*.py"], "protected": ["score.py", "secrets.txt"],
        "verify": {"command": "python score.py", "budget_seconds": 5},
        "metric": {"name": "score", "direction": "minimize", **metric},
        "proposer": {"name": "llm"},
    })


@pytest.mark.parametrize(("metric", "line"), [
    # A regex reads a value from a line that need not name the metric, even over two lines.
    ({"format": "regex", "patterns": {"score": r"score: (\S+)",
                                      "test_acc": r"holdout accuracy was (\S+)"}},
     "holdout accuracy was 0.9321"),
    ({"format": "regex", "patterns": {"score": r"score: (\S+)",
                                      "test_acc": r"held out:\n *(\S+)"}},
     "held out:\n    0.9321"),
    # A nested JSON name is read from a line that names only its last part.
    ({"format": "json"}, '{"eval": {"test_acc": 0.9321}}'),
    ({"format": "kv"}, "\x1b[32mtest_acc: 0.9321\x1b[0m"),
])
def test_every_line_a_heldout_metric_is_read_from_is_hidden(
        make_ctx: MakeCtx, metric: dict[str, object], line: str) -> None:
    heldout = ["eval.test_acc"] if metric["format"] == "json" else ["test_acc"]
    config = metric_config(heldout=heldout, **metric)
    crash = f"step 1\n{line}\nscore: 3.0\nValueError: boom"
    c = build_context(make_ctx(config, crash=crash))
    assert "0.9321" not in c.volatile
    assert "step 1" in c.volatile and "score: 3.0" in c.volatile and "ValueError: boom" in c.volatile


def test_a_protected_word_glued_to_a_word_or_a_terminal_code_is_hidden(
        make_ctx: MakeCtx, worktree: Path) -> None:
    # An adversarial tester's lines: the tokens were `1mkq4w` and `cache_kq4w`, neither equal
    # to the protected `kq4w`, so both reached the model.
    (worktree / "secrets.txt").write_text(
        "pin: Kq4w\nword: zqxv\nsplit = test\nroot = data\nbackend: Zr7t\n"
        "class NotFound(Exception): pass\n")
    (worktree / "lib" / "util.py").write_text("ZR7T_TIMEOUT = 3\n")  # in scope, glued
    crash = ("\x1b[1mKq4w\x1b[0m\n"
             "FileNotFoundError: cache_Kq4w.bin\n"
             "retry Kq4w2\n"  # glued to digits
             "call readKq4w()\n"  # glued after a change to a capital
             "\x1b[31mzqxv\x1b[0m\n"  # a plain word, cut apart from its word by a colour only
             "Traceback (most recent call last):\n"
             '  File "/usr/lib/python3.11/site-packages/numpy/core.py", line 9, in load\n'
             "step 2026: loss 0.5\n"
             # Plain protected words are no words of longer ones (`data`, `test`): hiding
             # them glued would hide most lines of a test suite's log.
             "reading metadata for tests/test_model.py::test_forward\n"
             # The model sees `ZR7T_TIMEOUT` in scope, and `FileNotFoundError` is Python's own.
             "ZR7T_TIMEOUT exceeded\n"
             "FileNotFoundError: [Errno 2] No such file or directory: 'x.bin'\n"
             "ValueError: boom\n")
    c = build_context(make_ctx(crash=crash))
    assert "kq4w" not in c.volatile.lower() and "zqxv" not in c.volatile
    assert c.volatile.count(HIDDEN) == 5
    for kept in ("Traceback (most recent call last):", "site-packages/numpy/core.py", "loss 0.5",
                 "reading metadata for tests/test_model.py::test_forward",
                 "ZR7T_TIMEOUT exceeded", "No such file or directory: 'x.bin'",
                 "ValueError: boom"):
        assert kept in c.volatile


def test_a_file_listed_in_verify_inputs_is_hidden_like_a_protected_one(
        make_ctx: MakeCtx, tmp_path: Path) -> None:
    # Held-out data read from outside the repository: the verify printed a line of it, and it
    # reached the model.
    import tracemalloc

    heldout = tmp_path / "heldout"
    (heldout / "labels").mkdir(parents=True)
    (heldout / "test.txt").write_text("row1,EXTSECRETxq77\n")
    (heldout / "labels" / "y.csv").write_text("id,label\n7,QZ9secretlabel\n")  # in a listed dir
    with (heldout / "labels" / "huge.bin").open("wb") as f:
        f.truncate(3 * 1024**3)  # sparse: read only as far as a protected file is
    config = parse_config({**make_config().model_dump(mode="json", exclude_defaults=True),
                           "verify": {"command": "python score.py", "budget_seconds": 5,
                                      "inputs": [str(heldout / "test.txt"),
                                                 str(heldout / "labels")]}})
    crash = ("row1,EXTSECRETxq77\n"
             "KeyError: 'id_EXTSECRETxq77_0'\n"
             "bad label qz9secretlabel\n"
             "ValueError: boom\n")
    tracemalloc.start()
    c = build_context(make_ctx(config, crash=crash))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "extsecretxq77" not in c.volatile.lower() and "qz9secret" not in c.volatile.lower()
    assert c.volatile.count(HIDDEN) == 3 and "ValueError: boom" in c.volatile
    assert peak < 200 * 1024**2, f"{peak / 1e6:.0f} MB held to read the evaluation inputs"


def test_a_long_protected_token_does_not_make_the_glued_search_slow(
        make_ctx: MakeCtx, worktree: Path) -> None:
    # A glued word is looked for among the slices of each log word up to the longest one's
    # length: a 100 000-character protected token made that 55 s for one 8 KB log line.
    import time

    (worktree / "secrets.txt").write_text("pin: Kq4w\nblob " + "a1" * 50_000 + "\n")
    crash = "b2" * 4000 + "\nFileNotFoundError: cache_Kq4w.bin\n"
    started = time.monotonic()
    c = build_context(make_ctx(crash=crash))
    assert time.monotonic() - started < 10
    assert "b2b2b2" in c.volatile and "kq4w" not in c.volatile.lower()
