"""The change under review: diffs parsed, inputs resolved against real repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch.errors import AutoresearchError, PreconditionError
from autoresearch.ledger import Ledger
from autoresearch.review.change import default_branch, from_diff_file, from_range, from_session
from autoresearch.review.diff import DiffMismatch, parse_diff, rebuild
from tests.review.conftest import Repo

DIFF = """\
diff --git a/a.py b/a.py
index 1111111..2222222 100644
--- a/a.py
+++ b/a.py
@@ -1,4 +1,5 @@
 one
-two
+TWO
+two and a half
 three
 four
diff --git a/old.py b/new.py
similarity index 90%
rename from old.py
rename to new.py
diff --git a/gone.py b/gone.py
deleted file mode 100644
--- a/gone.py
+++ /dev/null
@@ -1,2 +0,0 @@
-x = 1
-y = 2
diff --git a/img.png b/img.png
index 3333333..4444444 100644
Binary files a/img.png and b/img.png differ
"""


def test_parse_diff_reports_added_lines_in_head_numbers_and_removed_in_base_numbers() -> None:
    files, _ = parse_diff(DIFF)
    by_path = {f.path: f for f in files}
    a = by_path["a.py"]
    assert a.status == "modified"
    assert a.added == {2, 3} and a.removed == {2}
    assert a.hunks[0].new_span == range(1, 6)
    assert a.hunk_at(5) is not None and a.hunk_at(6) is None
    assert by_path["new.py"].status == "renamed" and by_path["new.py"].old_path == "old.py"
    assert by_path["gone.py"].status == "deleted" and by_path["gone.py"].removed == {1, 2}
    assert by_path["img.png"].binary
    assert "+two and a half" in a.patch


def test_rebuild_applies_and_undoes_a_diff_and_refuses_one_that_does_not_belong() -> None:
    files, raw = parse_diff(DIFF)
    base = "one\ntwo\nthree\nfour\n"
    head = "one\nTWO\ntwo and a half\nthree\nfour\n"
    assert rebuild(base, raw["a.py"], forward=True) == head
    assert rebuild(head, raw["a.py"], forward=False) == base
    with pytest.raises(DiffMismatch):
        rebuild("one\nsomething else\nthree\nfour\n", raw["a.py"], forward=True)


def test_garbage_is_not_a_diff_error() -> None:
    files, _ = parse_diff("hello\nworld\n")
    assert files == []


def test_default_range_is_the_branch_against_its_merge_base_with_main(repo: Repo) -> None:
    base = repo.commit("init", **{"app.py": "a = 1\n"})
    repo.branch("feature")
    head = repo.commit("feature", **{"app.py": "a = 1\nb = 2\n"})
    repo.git("checkout", "-q", "main")
    repo.commit("main moves on", **{"other.py": "c = 3\n"})
    repo.git("checkout", "-q", "feature")
    change = from_range(repo.path, None, None)
    assert default_branch(repo.path) == "main"
    assert (change.subject.base, change.subject.head) == (base, head)
    assert [f.path for f in change.files] == ["app.py"]  # main's own commit is not in it
    assert change.file("app.py") is not None and change.file("app.py").added == {2}  # type: ignore[union-attr]
    assert [c.subject for c in change.commits] == ["feature"]
    assert change.subject.key == "range:feature"
    assert change.source.head_text("app.py") == "a = 1\nb = 2\n"
    assert change.source.base_text("app.py") == "a = 1\n"


def test_unknown_revision_is_a_precondition_error_naming_the_option(repo: Repo) -> None:
    repo.commit("init", **{"app.py": "a = 1\n"})
    with pytest.raises(PreconditionError) as info:
        from_range(repo.path, "no-such-branch", None)
    assert info.value.where == "--base" and "not a commit" in info.value.what
    with pytest.raises(PreconditionError):
        from_range(repo.path, None, "--output=/tmp/x")  # never read as an option


def test_session_input_is_the_session_branch_against_its_base(repo: Repo) -> None:
    base = repo.commit("init", **{"train.py": "LR = 0.1\n"})
    repo.git("branch", "autoresearch/mar5")
    repo.git("checkout", "-q", "autoresearch/mar5")
    kept = repo.commit("lower the LR", **{"train.py": "LR = 0.05\n"})
    repo.git("checkout", "-q", "main")
    ledger = Ledger(repo.path / ".autoresearch" / "ledger.db")
    ledger.create_session(tag="mar5", branch="autoresearch/mar5", base_commit=base,
                          worktree="wt", metric="loss", direction="minimize", config={},
                          proposer="tune")
    ledger.close()
    change = from_session(repo.path, "mar5")
    assert (change.subject.base, change.subject.head) == (base, kept)
    assert change.subject.key == "session:mar5"
    assert change.file("train.py") is not None
    with pytest.raises(PreconditionError) as info:
        from_session(repo.path, "nope")
    assert "mar5" in (info.value.fix or "")


def test_a_diff_file_is_read_against_the_working_tree_applied_or_not(repo: Repo,
                                                                   tmp_path: Path) -> None:
    repo.commit("init", **{"app.py": "a = 1\nb = 2\n"})
    (repo.path / "app.py").write_text("a = 1\nb = 3\nc = 4\n")
    patch = tmp_path / "change.diff"
    patch.write_text(repo.git("diff") + "\n")
    applied = from_diff_file(repo.path, str(patch))
    assert applied.source.head_text("app.py") == "a = 1\nb = 3\nc = 4\n"
    assert applied.source.base_text("app.py") == "a = 1\nb = 2\n"
    repo.git("checkout", "--", "app.py")  # not applied any more: applied in memory instead
    pending = from_diff_file(repo.path, str(patch))
    assert pending.source.head_text("app.py") == "a = 1\nb = 3\nc = 4\n"
    assert pending.file("app.py").added == {2, 3}  # type: ignore[union-attr]
    (repo.path / "app.py").write_text("something else entirely\n")
    with pytest.raises(PreconditionError) as info:
        from_diff_file(repo.path, str(patch))
    assert "does not match app.py" in info.value.what
    with pytest.raises(AutoresearchError):
        from_diff_file(repo.path, str(tmp_path / "missing.diff"))


def test_a_diff_that_adds_and_deletes_files_applied_or_not(repo: Repo, tmp_path: Path) -> None:
    repo.commit("init", **{"old.py": "x = 1\ny = 2\n", "keep.py": "k = 1\n"})
    repo.git("rm", "-q", "old.py")
    (repo.path / "new.py").write_text("z = 3\n")
    repo.git("add", "new.py")
    patch = tmp_path / "files.diff"
    patch.write_text(repo.git("diff", "--cached") + "\n")
    applied = from_diff_file(repo.path, str(patch))
    assert applied.source.head_text("new.py") == "z = 3\n"
    assert applied.source.base_text("old.py") == "x = 1\ny = 2\n"  # from the diff itself
    assert [f.path for f in applied.reviewable] == ["new.py"]
    repo.git("reset", "-q", "--hard")
    repo.git("clean", "-fdq")
    pending = from_diff_file(repo.path, str(patch))
    assert pending.source.head_text("new.py") == "z = 3\n"
    assert pending.source.base_text("old.py") == "x = 1\ny = 2\n"


def test_files_whose_names_git_quotes_are_reviewed_under_their_real_names(repo: Repo) -> None:
    """git quotes a non-ASCII name (`é.py`), and a tab in one, with C escapes: the review reads
    and analyses those files by their real names; a name that is not UTF-8 does not fail it."""
    from tests.review.conftest import review_offline

    repo.commit("init", **{"a.py": "x = 1\n"})
    repo.branch("feature")
    repo.commit("names", **{"é.py": "print(accented)\n", "tab\there.py": "print(tabbed)\n"})
    (repo.path / "caf\udce9.py").write_bytes(b"print(latin1)\n")  # a Latin-1 byte in the name
    repo.git("add", "-A")
    repo.git("commit", "-qm", "latin-1 name")
    change = repo.change("main")
    paths = {f.path for f in change.files}
    assert {"é.py", "tab\there.py"} <= paths
    assert change.source.head_text("é.py") == "print(accented)\n"
    found = {(f.path, s) for f in review_offline(change).findings for s in f.sources}
    assert ("é.py", "ruff F821") in found
    assert ("tab\there.py", "ruff F821") in found


def test_a_file_name_with_a_line_break_never_names_another_object(repo: Repo) -> None:
    """git reads `cat-file --batch` requests a line at a time: a file name holding a line feed
    (or a carriage return, which git drops) must neither shift later files' contents onto the
    wrong names nor have its second half (`HEAD:evaluate.py`) read as an object of its own."""
    odd = "notes.py\nHEAD:evaluate.py"
    cr = "z.py\r"
    repo.commit("init", **{"evaluate.py": "SECRET = 'held-out answers'\n", "z.py": "z = 0\n"})
    (repo.path / odd).write_text("old = 1\n")
    repo.git("add", "-A")
    repo.git("commit", "-qm", "odd name")
    repo.branch("feature")
    (repo.path / odd).write_text("new = 2\n")
    (repo.path / cr).write_text("carriage = 3\n")
    (repo.path / "later.py").write_text("later = 4\n")
    repo.git("add", "-A")
    repo.git("commit", "-qm", "edit")
    change = repo.change("main")
    assert {odd, cr, "later.py"} <= {f.path for f in change.files}
    source = change.source
    source.prefetch(head=[odd, cr, "later.py", "z.py"], base=[odd, cr, "z.py"])
    assert source.head_text(odd) == "new = 2\n"
    assert source.base_text(odd) == "old = 1\n"
    assert source.head_text(cr) == "carriage = 3\n"
    assert source.base_text(cr) is None  # added on the branch: not z.py's content
    assert source.head_text("later.py") == "later = 4\n"
    assert source.head_text("z.py") == "z = 0\n"


def test_a_file_with_too_many_changed_lines_is_named_not_read(repo: Repo,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    """A data dump in the change (here over a limit lowered to 50 lines; 20,000 by default) is
    left out of the diff that is read and parsed, and named in the review's notes; the rest of
    the change is reviewed as usual. (A 50 MB text file took 5 GB of memory and 107 s.)"""
    from autoresearch.review import change as changes
    from tests.review.conftest import review_offline

    monkeypatch.setattr(changes, "MAX_DIFF_LINES", 50)
    repo.commit("init", **{"a.py": "x = 1\n", "dump.py": "v = 0\n"})
    repo.branch("feature")
    repo.commit("dump", **{"a.py": "x = 1\nprint(missing)\n",
                           "dump.py": "".join(f"v{i} = {i}\n" for i in range(80)),
                           "data.txt": "row\n" * 60})
    change = repo.change("main")
    by_path = {f.path: f for f in change.files}
    assert set(by_path) == {"a.py", "dump.py", "data.txt"}
    assert by_path["data.txt"].status == "added" and not by_path["data.txt"].hunks
    assert "row" not in change.diff_text and "v70 = 70" not in change.diff_text
    review = review_offline(change)
    assert [(f.path, f.sources) for f in review.findings] == [("a.py", ("ruff F821",))]
    assert any(n.startswith("data.txt: not reviewed (60 changed lines") for n in review.notes)
    assert by_path["dump.py"].status == "modified" and by_path["dump.py"].old_path == "dump.py"
    assert any(n.startswith("dump.py: not reviewed (81 changed lines") for n in review.notes)


@pytest.mark.parametrize("name", ["/ABS/secret.py", "../outside/secret.py", "linked/secret.py"])
def test_a_diff_never_reads_a_file_outside_the_repository(repo: Repo, tmp_path: Path,
                                                          name: str) -> None:
    """A diff is input: one naming an absolute path, a `..` path, or a path through a linked
    directory that leads out of the repository must not have the file outside read (and so
    sent to a model), even when its lines match the secret there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("TOKEN = 'hunter2-planted'\n")
    repo.commit("init", **{"a.py": "x = 1\n"})
    (repo.path / "linked").symlink_to(outside, target_is_directory=True)
    path = name.replace("/ABS", str(outside))
    diff = tmp_path / "change.diff"
    diff.write_text(f"--- a/{path}\n+++ b/{path}\n".replace("a//", "/").replace("b//", "/")
                    + "@@ -1 +1,2 @@\n TOKEN = 'hunter2-planted'\n+print(TOKEN)\n")
    with pytest.raises(PreconditionError) as caught:
        change = from_diff_file(repo.path, str(diff))
        # Not refused: then nothing outside may have been read.
        assert "hunter2" not in (change.source.base_text(change.files[0].path) or "")
    assert "the diff names a path outside the repository" in str(caught.value)


def test_a_repository_without_commits_says_so_and_its_fix_works(repo: Repo, tmp_path: Path
                                                                ) -> None:
    import subprocess

    repo.write("a.py", "print(undefined)\n")
    with pytest.raises(PreconditionError, match="no commit yet") as caught:
        from_range(repo.path, None, None)
    assert "--diff" in str(caught.value.fix)
    repo.git("add", "-N", ".")
    diff = tmp_path / "change.diff"
    diff.write_bytes(subprocess.run(["git", "diff"], cwd=repo.path, capture_output=True,
                                    check=True).stdout)
    change = from_diff_file(repo.path, str(diff))
    assert [f.path for f in change.files] == ["a.py"]


def test_a_diff_file_names_a_file_with_too_many_changed_lines_without_reading_it(
        repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--diff FILE` keeps the same limit as a revision range (lowered to 50 lines here): the
    diff is read line by line and the big files' lines are dropped as they come, named in the
    notes; a removed line that looks like a file header (`--- ...`) stays inside its hunk."""
    from autoresearch.review import change as changes
    from tests.review.conftest import review_offline

    monkeypatch.setattr(changes, "MAX_DIFF_LINES", 50)
    kept = "".join(f"r{i}\n" for i in range(300))
    repo.commit("init", **{"a.py": "x = 1\n", "dump.py": "v = 0\n", "old.txt": kept,
                           "q.sql": "select 1;\n-- old note\nselect 2;\n"})
    repo.branch("feature")
    repo.git("mv", "old.txt", "moved.txt")
    repo.commit("dump", **{"a.py": "x = 1\nprint(missing)\n",
                           "dump.py": "".join(f"v{i} = {i}\n" for i in range(80)),
                           "data.txt": "row\n" * 60, "moved.txt": kept + "s\n" * 60,
                           "q.sql": "select 1;\nselect 2;\n"})
    patch = tmp_path / "change.diff"
    patch.write_text(repo.git("diff", "--find-renames", "main") + "\n")
    change = from_diff_file(repo.path, str(patch))
    by_path = {f.path: f for f in change.files}
    assert set(by_path) == {"a.py", "dump.py", "data.txt", "moved.txt", "q.sql"}
    assert by_path["data.txt"].status == "added" and not by_path["data.txt"].hunks
    assert by_path["dump.py"].status == "modified" and not by_path["dump.py"].hunks
    assert (by_path["moved.txt"].status, by_path["moved.txt"].old_path) == ("renamed", "old.txt")
    assert by_path["q.sql"].lines_removed == 1 and by_path["a.py"].lines_added == 1
    assert "row" not in change.diff_text and "v70 = 70" not in change.diff_text
    assert "-- old note" in change.diff_text
    review = review_offline(change)
    assert [(f.path, f.sources) for f in review.findings] == [("a.py", ("ruff F821",))]
    notes = " ".join(review.notes)
    assert "data.txt: not reviewed (60 changed lines, over the 50-line limit" in notes
    assert "dump.py: not reviewed (81 changed lines" in notes
    assert "moved.txt: not reviewed (60 changed lines" in notes


def test_a_huge_diff_file_is_reviewed_in_bounded_memory(repo: Repo, tmp_path: Path) -> None:
    """A diff of one huge generated file (12 MB here) is streamed, not parsed whole: the review
    process's peak memory stays far below what parsing took (over 1 GB for 46 MB, 340 MB for
    this one), and the file is named as not reviewed."""
    import json
    import subprocess
    import sys

    from tests.conftest import cli_env

    repo.commit("init", **{"small.py": "x = 1\n"})
    rows = 500_000
    patch = tmp_path / "huge.diff"
    with patch.open("w") as out:
        out.write("diff --git a/data.csv b/data.csv\nnew file mode 100644\n"
                  f"--- /dev/null\n+++ b/data.csv\n@@ -0,0 +1,{rows} @@\n")
        out.writelines(f"+{i},{i * 7919 % 100003},abcdefgh\n" for i in range(rows))
        out.write("diff --git a/small.py b/small.py\n--- a/small.py\n+++ b/small.py\n"
                  "@@ -1 +1,2 @@\n x = 1\n+y = missing\n")
    # The CLI's own peak, read by the CLI process itself at its end (VmHWM of its address space):
    # the child's ru_maxrss would also count the pytest image it was forked from, which grows to
    # several hundred MB over a full run of the suite.
    hwm = tmp_path / "vmhwm"
    measured = ("import os, runpy\n"
                "try:\n"
                "    runpy.run_module('autoresearch', run_name='__main__', alter_sys=True)\n"
                "finally:\n"
                "    with open('/proc/self/status') as status, open(os.environ['HWM'], 'w') as out:\n"
                "        out.write(next(l for l in status if l.startswith('VmHWM:')))\n")
    proc = subprocess.run([sys.executable, "-c", measured, "review", "--diff", str(patch),
                           "--offline", "--no-record", "--format", "json"],
                          cwd=repo.path, env=cli_env({"HWM": str(hwm)}), capture_output=True,
                          text=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 0, proc.stderr
    stdout = proc.stdout
    peak_mb = int(hwm.read_text().split()[1]) / 1024  # "VmHWM:   123456 kB"
    # Streamed: ~45 MB here; the whole diff read into memory first: ~120 MB.
    assert peak_mb < 80, f"peak RSS {peak_mb:.0f} MB"
    review = json.loads(stdout)
    assert any(n.startswith(f"data.csv: not reviewed ({rows:,} changed lines")
               for n in review["notes"]), review["notes"]
    assert [f["path"] for f in review["findings"]] == ["small.py"]
