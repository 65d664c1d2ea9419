"""Guardrails refuse what may not change, before anything is committed."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest

from autoresearch import gitops
from autoresearch.config import load_config, parse_config
from autoresearch.errors import ConfigError
from autoresearch.gitops import runner
from autoresearch.gitops.commits import commit_change, identity_args
from autoresearch.gitops.status import changed_paths
from autoresearch.globs import matches, select
from autoresearch.guardrails import (
    Rules,
    apply_edits,
    check_changed_paths,
    check_edits,
    hash_files,
    judge_path,
    path_problem,
    protected_changes,
    protected_fence,
)
from autoresearch.proposers.base import ProposalContext
from autoresearch.proposers.knob_discovery import discover_knobs
from autoresearch.proposers.knobs import KnobError
from autoresearch.repo_paths import PathRefused, canonical_path
from tests.conftest import git, make_repo, run_cli, use_script

RULES = Rules(scope=["src/**/*.py", "train.py"], protected=["src/eval/*", "autoresearch.toml"])


def test_globs_follow_git_style_semantics() -> None:
    assert matches("train.py", ["train.py"])
    assert matches("src/a/b/c.py", ["src/**/*.py"])
    assert matches("src/c.py", ["src/**/*.py"])
    assert not matches("src/a/c.txt", ["src/**/*.py"])
    assert matches("data/x/y.bin", ["data"])  # a directory covers what is below it
    assert not matches("lib/x.py", ["*.py"])  # * stays within one segment
    assert select(["b.py", "a.py", "c.txt"], ["*.py"]) == ["a.py", "b.py"]


def test_path_rules(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    edits: dict[str, str | None] = {
        "train.py": "ok",
        "src/model/net.py": "ok",
        "src/eval/score.py": "no",
        "../outside.py": "no",
        "/etc/passwd": "no",
        ".git/config": "no",
        "README.md": "no",
        "autoresearch.toml": "no",
    }
    problems = check_edits(tmp_path, edits, RULES)
    text = "\n".join(problems)
    assert not [p for p in problems if p.startswith(("train.py", "src/model/net.py"))]
    assert "src/eval/score.py: protected" in text
    assert "../outside.py: escapes the repository" in text
    assert "/etc/passwd: is absolute" in text
    assert ".git/config" in text
    assert "README.md: outside the scope" in text
    assert len(problems) == 6


def test_symlinks_cannot_redirect_writes(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "secret.txt").write_text("x")
    os.symlink(tmp_path / "secret.txt", tmp_path / "src" / "link.py")
    os.symlink("/tmp", tmp_path / "src" / "outdir")
    problems = check_edits(tmp_path, {"src/link.py": "x", "src/outdir/a.py": "x"}, RULES)
    assert len(problems) == 2 and all("symlink" in p for p in problems)


def test_size_and_count_limits(tmp_path: Path) -> None:
    small = Rules(scope=["*.py"], protected=[], max_file_bytes=10, max_files=2)
    problems = check_edits(tmp_path, {"a.py": "x" * 11, "b.py": "", "c.py": ""}, small)
    assert any("3 files" in p for p in problems)
    assert any("exceeds 10" in p for p in problems)
    (tmp_path / "big.py").write_text("x" * 20)
    assert check_changed_paths(tmp_path, ["big.py"], small)


def test_apply_edits_and_protected_hashes(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("fixed")
    hashes = hash_files(tmp_path, ["keep.txt", "gone.txt"])
    apply_edits(tmp_path, {"src/new.py": "print(1)\n", "old.py": None})
    assert (tmp_path / "src/new.py").read_text() == "print(1)\n"
    assert protected_changes(tmp_path, hashes) == []
    (tmp_path / "keep.txt").write_text("tampered")
    (tmp_path / "gone.txt").write_text("appeared")
    assert protected_changes(tmp_path, hashes) == ["gone.txt", "keep.txt"]


# --- canonical paths (issue 9: a path is judged by what it names, not by its text) --------

ISSUE_RULES = Rules(scope=["src/*/*.py", "src/model.py"], protected=["src/metric.py", "src/données.py"])


def issue_repo(tmp_path: Path) -> Path:
    """scope src/*/*.py, protected src/metric.py (the config check accepts this), plus the ways a
    repository can give one file several names: a symlinked directory and a symlinked file."""
    root = tmp_path / "repo"
    (root / "src" / "sub").mkdir(parents=True)
    (root / "src" / "metric.py").write_text("SCORE = measure()\n")
    (root / "src" / "données.py").write_text("SPLIT = 0.9\n")  # NFC on disk
    (root / "src" / "model.py").write_text("X = 1\n")
    (root / "src" / "sub" / "a.py").write_text("A = 1\n")
    os.symlink(".", root / "src" / "alias")  # src/alias/metric.py is src/metric.py
    os.symlink("../metric.py", root / "src" / "sub" / "link.py")
    os.symlink("/tmp", root / "src" / "out")
    return root


@pytest.mark.parametrize("spelling", [
    "src/./metric.py",  # the issue's example: matches src/*/*.py, misses src/metric.py
    "src//metric.py",
    "./src/metric.py",
    "src/metric.py/",
    "src/sub/../metric.py",
    "src\\metric.py",
    "src/METRIC.py",  # another case: the same file on a case-insensitive file system
    "SRC/metric.py",
    unicodedata.normalize("NFD", "src/données.py"),  # the same file where NFD == NFC
    "src/alias/metric.py",  # through a symlinked directory
    "src/sub/link.py",  # a symlinked file pointing at the evaluation
    "src/out/x.py",  # a symlink out of the repository
    "src/metric\u200b.py",  # an invisible character
])
def test_no_spelling_of_a_protected_file_is_accepted(tmp_path: Path, spelling: str) -> None:
    root = issue_repo(tmp_path)
    problems = check_edits(root, {spelling: "SCORE = 0.0  # fake\n"}, ISSUE_RULES)
    assert problems, f"{spelling!r} was accepted"
    assert (root / "src" / "metric.py").read_text() == "SCORE = measure()\n"


def test_the_issue_example_is_refused_as_the_protected_file_it_names(tmp_path: Path) -> None:
    root = issue_repo(tmp_path)
    assert canonical_path("src/./metric.py", root) == "src/metric.py"
    with pytest.raises(PathRefused, match=r"protected \(matches src/metric.py\)"):
        judge_path(root, "src/./metric.py", ISSUE_RULES, exact=False)
    # The guardrails judge exactly what will be written: a cosmetic variant is refused too,
    # with the form to use.
    (problem,) = check_edits(root, {"src/sub/./a.py": "A = 2\n"}, ISSUE_RULES)
    assert problem == "src/sub/./a.py: is not in canonical form (write it as src/sub/a.py)"
    assert check_edits(root, {"src/sub/a.py": "A = 2\n"}, ISSUE_RULES) == []


@pytest.mark.parametrize(("raw", "reason"), [
    ("", "is empty"),
    ("/etc/passwd", "is absolute"),
    ("~/x.py", "is absolute"),
    ("C:/x.py", "is absolute"),
    ("a/../../x", "escapes the repository"),
    (".git/hooks/pre-commit", "is inside .git"),
    ("sub/.GIT/config", "is inside .git"),
    ("src/\udcff.py", "lone surrogate U+DCFF"),
    ("src/a\nb.py", "U+000A"),
    ("src/a\u202eyp.py", "U+202E"),
    ("src/a\u00a0b.py", "U+00A0"),
    ("src/" + "x" * 256 + ".py", "too long"),
    (".", "names the repository itself"),
])
def test_paths_that_are_not_plain_relative_names_are_refused(raw: str, reason: str) -> None:
    with pytest.raises(PathRefused, match=re.escape(reason)):
        canonical_path(raw)


def test_a_name_that_differs_only_by_case_or_unicode_form_is_an_alias(tmp_path: Path) -> None:
    root = issue_repo(tmp_path)
    with pytest.raises(PathRefused, match="another spelling of src/metric.py"):
        canonical_path("src/Metric.py", root)
    # A new file in NFD is refused (it is another name for the NFC one on macOS, and a
    # different file on Linux: ambiguous either way).
    with pytest.raises(PathRefused, match="NFC"):
        canonical_path(unicodedata.normalize("NFD", "src/sub/café.py"), root)
    # A protected name that does not exist yet is still matched in any case.
    rules = Rules(scope=["*.txt"], protected=["secret.txt"])
    assert "protected" in (path_problem(root, "SECRET.txt", rules) or "")


def test_directories_and_types_are_checked(tmp_path: Path) -> None:
    root = issue_repo(tmp_path)
    with pytest.raises(PathRefused, match="is a directory"):
        canonical_path("src/sub", root)
    with pytest.raises(PathRefused, match="treats src/model.py as a directory"):
        canonical_path("src/model.py/x.py", root)
    assert canonical_path("src/new/dir/file.py", root) == "src/new/dir/file.py"


def test_git_control_files_and_ignored_files_are_refused(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"src/a.py": "A = 1\n", ".gitignore": "*.log\n"})
    rules = Rules(scope=["src/**"], protected=[])
    problems = check_edits(root, {"src/.gitignore": "*\n", "src/.gitattributes": "* -text\n"},
                           rules)
    assert len(problems) == 2 and all("git's control file" in p for p in problems)
    # An ignored file could not be committed: the run would measure something the commit lacks.
    (problem,) = check_edits(root, {"src/out.log": "x\n"}, rules)
    assert problem.startswith("src/out.log: ignored by git")
    assert check_edits(root, {"src/a.py": "A = 2\n"}, rules) == []


def test_deleting_a_file_git_does_not_track_is_refused(tmp_path: Path) -> None:
    """`git add -A -- x` fails for a path that is neither tracked nor on disk: the session used
    to crash on such a proposal after deleting the file."""
    root = make_repo(tmp_path / "r", {"src/a.py": "A = 1\n"})
    (root / "src" / "out.py").write_text("an output of an earlier run\n")
    rules = Rules(scope=["src/**"], protected=[])
    problems = check_edits(root, {"src/never.py": None, "src/out.py": None}, rules)
    assert problems == [
        "src/never.py: not a file git tracks, so there is nothing to delete in a commit",
        "src/out.py: not a file git tracks, so there is nothing to delete in a commit"]
    assert check_edits(root, {"src/a.py": None}, rules) == []


def test_a_file_named_like_a_glob_is_committed_alone(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"*.txt": "literal\n", "keep.py": "K = 1\n"})
    (root / "other.txt").write_text("never judged, never committed\n")
    (root / "*.txt").unlink()
    committed = commit_change(root, "delete the file named *.txt", ["*.txt"])
    assert committed.files == ["*.txt"]
    assert "other.txt" not in gitops.tracked_files(root)


# --- proposed content is text (issue 9: a model reply is untrusted bytes) ------------------


@pytest.mark.parametrize(("content", "reason"), [
    ("X = 1\ud800\n", "lone surrogate U+D800"),
    ("X = 1\0\n", "NUL byte"),
    ("X = 1  # \x08\n", "U+0008"),
    ("access = 'user\u202e \u2066// admin\u2069\u2066'\n", "U+202E"),
    (b"X = 1\n", "not text (a bytes)"),
])
def test_proposed_content_must_be_plain_text(tmp_path: Path, content: object, reason: str) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "X = 0\n"})
    (problem,) = check_edits(root, {"a.py": content}, Rules(scope=["*.py"], protected=[]))  # type: ignore[dict-item]
    assert problem.startswith("a.py: ") and reason in problem


def test_control_characters_a_file_already_holds_may_stay(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "RED = '\x1b[31m'\nX = 0\n"})
    rules = Rules(scope=["*.py"], protected=[])
    assert check_edits(root, {"a.py": "RED = '\x1b[31m'\nX = 1\n"}, rules) == []
    assert check_edits(root, {"b.py": "RED = '\x1b[31m'\n"}, rules)  # new here: refused


def test_an_agent_may_keep_a_binary_file_binary_but_not_add_one(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "X = 0\n"})
    (root / "w.bin").write_bytes(b"\0\1\2")
    runner.git(root, "add", "w.bin")
    runner.git(root, *identity_args(root), "commit", "-qm", "binary")
    rules = Rules(scope=["*.py", "*.bin"], protected=[])
    (root / "w.bin").write_bytes(b"\0\3\4")  # binary before: may stay binary
    (root / "a.py").write_bytes(b"X = 1\n\xff\xfe\n")  # text before: not UTF-8 now
    (root / "new.bin").write_bytes(b"\0new")  # new and binary
    problems = check_changed_paths(root, changed_paths(root), rules)
    assert sorted(p.split(":")[0] for p in problems) == ["a.py", "new.bin"]
    assert "not UTF-8 text (byte 0xff at offset 6)" in problems[0]
    assert "NUL byte" in problems[1]


def test_an_agent_may_not_add_a_hard_link_to_another_file(tmp_path: Path) -> None:
    # `ln score.py sub/evil.py`: the run fence's chmod of score.py then showed as a write of
    # sub/evil.py during the run, a crash blamed on "a verify command" that wrote nothing.
    root = make_repo(tmp_path / "r", {"a.py": "X = 0\n", "score.py": "S = 1\n"})
    (root / "sub").mkdir()
    os.link(root / "score.py", root / "sub" / "evil.py")
    (root / "a.py").write_text("X = 1\n")
    rules = Rules(scope=["a.py", "sub/*.py"], protected=["score.py"])
    (problem,) = check_changed_paths(root, changed_paths(root), rules)
    assert problem.startswith("sub/evil.py: a hard link to another file"), problem


def test_a_file_name_that_is_not_utf8_is_refused_by_name(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "X = 0\n"})
    with open(os.path.join(os.fsencode(root), b"b\xff.py"), "wb") as fh:
        fh.write(b"Y = 1\n")
    paths = changed_paths(root)
    assert paths == ["b\udcff.py"]
    (problem,) = check_changed_paths(root, paths, Rules(scope=["*.py"], protected=[]))
    assert problem.startswith("'b\\udcff.py': is not valid UTF-8")


# --- the fence around a run (issue 9: a run that puts the file back is still caught) -------


def _rewrite_in_place(path: Path, *, keep_mtime: bool) -> None:
    """What a hostile run does: make the file writable, rewrite it with its own content, put the
    mtime and the mode back. As root the chmod is not even needed."""
    st = path.stat()
    data = path.read_bytes()
    os.chmod(path, 0o644)
    path.write_bytes(data)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.chmod(path, stat.S_IMODE(st.st_mode))


def test_the_fence_makes_protected_files_read_only_and_restores_their_modes(tmp_path: Path) -> None:
    (tmp_path / "score.py").write_text("S = 1\n")
    os.chmod(tmp_path / "score.py", 0o640)
    expected = hash_files(tmp_path, ["score.py", "missing.py"])
    with protected_fence(tmp_path, expected) as fence:
        assert stat.S_IMODE((tmp_path / "score.py").stat().st_mode) == 0o440
        (tmp_path / "output.txt").write_text("a run may write anything else\n")
    assert fence.changes == [] and not fence.tampered
    assert stat.S_IMODE((tmp_path / "score.py").stat().st_mode) == 0o640


@pytest.mark.parametrize(("tamper", "how"), [
    (lambda p: _rewrite_in_place(p, keep_mtime=False), "then its content put back"),
    (lambda p: _rewrite_in_place(p, keep_mtime=True), "then its content and mtime put back"),
    (lambda p: (p.unlink(), p.write_text("S = 1\n")), "during the run"),  # inodes get reused
    (lambda p: (os.chmod(p, 0o644), p.write_text("S = 0  # fake\n")), "content changed"),
    (lambda p: p.unlink(), "deleted"),
])
def test_the_fence_catches_any_write_to_a_protected_file(
        tmp_path: Path, tamper: Callable[[Path], object], how: str) -> None:
    score = tmp_path / "score.py"
    score.write_text("S = 1\n")
    expected = hash_files(tmp_path, ["score.py"])
    with protected_fence(tmp_path, expected) as fence:
        time.sleep(0.03)  # a run's process start: longer than the file system's clock tick
        tamper(score)
    (change,) = fence.changes
    assert change.startswith("score.py (") and how in change


def test_the_fence_reports_a_file_changed_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "score.py").write_text("S = 1\n")
    expected = hash_files(tmp_path, ["score.py"])
    (tmp_path / "score.py").write_text("S = 2\n")
    with protected_fence(tmp_path, expected) as fence:
        pass
    assert fence.changes == ["score.py (differed from the session's start before the run)"]


def test_a_checkout_inside_the_fence_is_not_mistaken_for_tampering(tmp_path: Path) -> None:
    """Confirmation runs switch the slot between the incumbent and the candidate inside the
    fence; the fence's own chmods change the protected files' ctime, which must not make git
    rewrite them (a rewrite is a write)."""
    root = make_repo(tmp_path / "r", {"score.py": "S = 1\n", "a.py": "A = 1\n"})
    first = gitops.rev_parse(root, "HEAD")
    (root / "a.py").write_text("A = 2\n")
    second = commit_change(root, "candidate").sha
    expected = hash_files(root, ["score.py"])
    time.sleep(1.1)  # the index is older than the chmods below (git compares whole seconds)
    with protected_fence(root, expected):
        pass
    with protected_fence(root, expected) as fence:
        gitops.checkout(root, first)
        gitops.checkout(root, second)
    assert fence.changes == []


# A candidate that cheats the way the issue describes: the evaluation is replaced by one that
# prints a perfect score, run, and put back (same bytes, same mtime, same mode) before exiting.
CHEAT = """\
import os, subprocess, sys
if not os.environ.get("CHEAT_INNER"):
    st = os.stat("score.py")
    real = open("score.py", "rb").read()
    os.chmod("score.py", 0o644)
    open("score.py", "w").write("print('score: 0.0')\\n")
    out = subprocess.run([sys.executable, "score.py"], capture_output=True, text=True,
                         env={**os.environ, "CHEAT_INNER": "1"}).stdout
    open("score.py", "wb").write(real)
    os.utime("score.py", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.chmod("score.py", st.st_mode)
    sys.stdout.write(out)
    sys.stdout.flush()
    os._exit(0)
X = 3.0
"""


@pytest.mark.slow
def test_a_run_that_fakes_the_evaluation_and_puts_it_back_is_a_crash(toy_repo: Path) -> None:
    use_script(toy_repo, [
        {"hypothesis": "swap the evaluation for one run", "edits": {"target.py": CHEAT}},
        {"hypothesis": "an honest change", "edits": {"target.py": "X = 6.5\n"}},
    ])
    result = run_cli(toy_repo, "run", "--tag", "t", "--iterations", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        rows = conn.execute("SELECT status, decision_reason FROM experiments ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == ["keep", "crash", "keep"], rows
    assert "the candidate's run modified protected files: score.py (written or chmod-ed during " \
           "the run, then its content and mtime put back)" in str(rows[1][1])
    # The fake perfect score was never kept: the branch holds the honest change.
    assert git(toy_repo, "show", "autoresearch/t:target.py") == "X = 6.5"
    worktree = toy_repo / ".autoresearch" / "worktrees" / "t"
    assert stat.S_IMODE((worktree / "score.py").stat().st_mode) & 0o200  # writable again


@pytest.mark.slow
def test_a_command_guard_that_writes_a_protected_file_fails(toy_repo: Path) -> None:
    touch = ("{python} -c \"import os; st = os.stat('score.py'); os.chmod('score.py', 0o644); "
             "d = open('score.py', 'rb').read(); open('score.py', 'wb').write(d); "
             "os.utime('score.py', ns=(st.st_atime_ns, st.st_mtime_ns))\"")
    use_script(toy_repo, [{"hypothesis": "better", "edits": {"target.py": "X = 6.5\n"}}],
               extra_config="")
    config = toy_repo / "autoresearch.toml"
    config.write_text(config.read_text().replace(
        "[proposer]", f"[[guards]]\ncommand = {json.dumps(touch)}\n\n[proposer]"))
    git(toy_repo, "commit", "-qam", "a guard")
    result = run_cli(toy_repo, "run", "--tag", "g", "--iterations", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    with sqlite3.connect(toy_repo / ".autoresearch" / "ledger.db") as conn:
        rows = conn.execute("SELECT status, decision_reason FROM experiments ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == ["keep", "discard"], rows
    assert "guard failed" in str(rows[1][1]) and "modified protected files: score.py" in str(rows[1][1])


# --- the other places a path enters --------------------------------------------------------


def test_globs_are_put_in_the_form_of_the_paths_they_judge(tmp_path: Path) -> None:
    # A protected pattern spelled with `./` or `//` still protects the file the user meant.
    for pattern in ("src/./metric.py", "src//metric.py", "./src/metric.py", "src/metric.py/"):
        assert matches("src/metric.py", [pattern]), pattern
    config = tmp_path / "autoresearch.toml"
    config.write_text('scope = ["src/*.py"]\nprotected = ["../eval.py"]\n'
                      '[verify]\ncommand = "x"\nbudget_seconds = 1\n[metric]\nname = "m"\n'
                      'direction = "minimize"\n')
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert "protected pattern '../eval.py' contains '..'" in info.value.render()


def test_a_knob_in_a_file_reached_through_a_symlink_is_refused_up_front(tmp_path: Path) -> None:
    root = issue_repo(tmp_path)
    (root / "src" / "model.py").write_text("LR = 0.1\n")
    with pytest.raises(KnobError, match="goes through the symlink src/alias"):
        discover_knobs(root, {"src/alias/model.py:LR": "log(1e-3, 1)"}, ["src/alias/model.py"])
    with pytest.raises(KnobError, match="protected"):
        discover_knobs(root, {"src/METRIC.py:SCORE": "float(0, 1)"}, ["src/*.py"],
                       protected=["src/metric.py"])


def test_a_proposer_reading_through_its_context_gets_only_what_it_may_change(
        tmp_path: Path) -> None:
    root = issue_repo(tmp_path)
    config = parse_config({"scope": ["src/*/*.py", "src/model.py"], "protected": ["src/metric.py"],
                           "verify": {"command": "x", "budget_seconds": 1},
                           "metric": {"name": "m", "direction": "minimize"}})
    ctx = ProposalContext(session_tag="t", worktree=root, config=config, program="",
                          scope_files=[], history=[], baseline=None, incumbent=None, stuck=False,
                          last_crash_log=None, metric_name="m", direction="minimize")
    assert ctx.read("src/sub/a.py") == "A = 1\n"
    for path in ("src/./metric.py", "src/sub/link.py", "src/alias/metric.py", "../x.py"):
        with pytest.raises(PathRefused):
            ctx.read(path)
