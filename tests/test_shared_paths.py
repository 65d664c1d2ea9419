"""`[verify] share`: git-ignored files of the user's checkout, linked into every worktree."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from autoresearch import gitops, shared_paths
from autoresearch.config import Config, load_config_text
from autoresearch.errors import ConfigError, PreconditionError
from autoresearch.gitops.status import changed_paths
from autoresearch.session import SessionStopped
from autoresearch.shared_paths import collect, missing_paths, suggest_share
from autoresearch.slots import Slots
from autoresearch.state import StatePaths
from tests.conftest import CONFIG, SCORE_PY, git, make_repo, run_cli

READER = textwrap.dedent(
    """
    # Reads the prepared data like a training script; WRITE=1 in the env writes to it.
    import os
    data = open("data/prep/train.bin", "rb").read()
    if os.environ.get("WRITE"):
        open("data/prep/train.bin", "ab").write(b"x")
    import target
    print(f"score: {len(data) + target.X}")
    """
)


def config_text(share: str = '"data/prep/*.bin"') -> str:
    return textwrap.dedent(
        f"""
        scope = ["target.py"]
        protected = ["reader.py"]
        [verify]
        command = "{{python}} reader.py"
        budget_seconds = 5
        share = [{share}]
        [metric]
        name = "score"
        direction = "minimize"
        [decision]
        repeats = 1
        deterministic = true  # the score is exact: identical repeats are the truth
        [proposer]
        name = "tune"
        [knobs]
        "target.py:X" = "float(0, 10)"
        """
    )


def data_repo(tmp_path: Path, share: str = '"data/prep/*.bin"') -> Path:
    """A repository whose prepared data (data/prep/*.bin) is git-ignored and exists only in the
    checkout, as after running the project's prepare step."""
    repo = make_repo(tmp_path / "repo", {
        "target.py": "X = 3.0\n", "reader.py": READER, ".gitignore": "*.bin\n",
        "data/prep/README": "run prepare to make train.bin\n",
        "autoresearch.toml": config_text(share),
    })
    (repo / "data" / "prep" / "train.bin").write_bytes(b"\0" * 100)
    (repo / "data" / "prep" / "val.bin").write_bytes(b"\1" * 10)
    return repo


def load(repo: Path) -> Config:
    return load_config_text((repo / "autoresearch.toml").read_text(), repo / "autoresearch.toml")


def test_collect_resolves_ignored_untracked_files(tmp_path: Path) -> None:
    repo = data_repo(tmp_path)
    shared = collect(repo, load(repo))
    assert [f.path for f in shared.files] == ["data/prep/train.bin", "data/prep/val.bin"]
    # A directory shares every untracked file below it; the tracked README comes from git.
    (repo / "autoresearch.toml").write_text(config_text('"data/prep"'))
    shared = collect(repo, load(repo))
    assert [f.path for f in shared.files] == ["data/prep/train.bin", "data/prep/val.bin"]


@pytest.mark.parametrize(
    ("share", "error", "message"),
    [
        ('"data/prep/README"', ConfigError, "names only files git tracks"),
        ('"data/none/*.bin"', PreconditionError, "matches no file in your checkout"),
        ('"notes.txt"', ConfigError, "must be git-ignored"),
    ],
)
def test_collect_refuses_what_cannot_be_shared(tmp_path: Path, share: str, error: type,
                                               message: str) -> None:
    repo = data_repo(tmp_path, share)
    (repo / "notes.txt").write_text("untracked but not ignored\n")
    with pytest.raises(error, match=message) as raised:
        collect(repo, load(repo))
    assert "verify.share" in str(raised.value)


def test_share_patterns_are_checked_at_load(tmp_path: Path) -> None:
    for share, message in (('"/etc/passwd"', "relative to the repository"),
                           ('"../other/data.bin"', "no '..'"),
                           ('".git/config"', "not a project file"),
                           ('"target.py"', "inside the scope")):
        with pytest.raises(ConfigError, match=message):
            load_config_text(config_text(share), tmp_path / "autoresearch.toml")


def slots_of(repo: Path, workers: int = 1) -> Slots:
    config = load(repo)
    return Slots(repo, StatePaths(repo, "t"), workers, shared=shared_paths.collect(repo, config))


def test_worktrees_get_links_after_every_reset(tmp_path: Path) -> None:
    repo = data_repo(tmp_path)
    worktree = repo / ".autoresearch" / "worktrees" / "t"
    slots = slots_of(repo)
    head = gitops.rev_parse(repo, "HEAD")
    slots.prepare(head)
    link = worktree / "data" / "prep" / "train.bin"
    assert link.is_symlink() and os.readlink(link) == str(repo / "data/prep/train.bin")
    assert changed_paths(worktree) == []  # ignored: git sees nothing to commit
    # A reset that removes them (an agent deleted one, or `git clean -x`) re-links them.
    link.unlink()
    git(worktree, "clean", "-fdxq")
    slots.reset(slots.all[0], head)
    assert link.is_symlink() and link.read_bytes() == b"\0" * 100
    assert (worktree / "data" / "prep" / "val.bin").is_symlink()
    # With several workers every slot gets them.
    two = slots_of(repo, 2)
    two.prepare(head)
    for slot in two.all:
        assert (slot.worktree / "data" / "prep" / "train.bin").is_symlink()


def test_a_change_to_the_shared_data_is_detected(tmp_path: Path) -> None:
    repo = data_repo(tmp_path)
    slots = slots_of(repo)
    slots.prepare(gitops.rev_parse(repo, "HEAD"))
    shared = slots.shared
    shared.check_unchanged()
    with open(repo / "data" / "prep" / "val.bin", "r+b") as fh:  # same size, same content length
        fh.write(b"\2")
    assert shared.changed() == ["data/prep/val.bin"]
    with pytest.raises(SessionStopped, match="data/prep/val.bin") as raised:
        shared.check_unchanged()
    assert raised.value.exit_code == 3


def test_a_run_that_writes_shared_data_stops_the_session(tmp_path: Path) -> None:
    repo = data_repo(tmp_path)
    text = config_text().replace("share = [", 'env = { WRITE = "1" }\nshare = [')
    (repo / "autoresearch.toml").write_text(text)
    git(repo, "commit", "-qam", "a command that writes its data")
    result = run_cli(repo, "run", "--iterations", "3", "--tag", "w")
    assert result.returncode == 3, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "stopped: shared data changed while the session used it: data/prep/train.bin" in out
    assert "Traceback" not in result.stderr
    # Restored, the same command resumes.
    (repo / "data" / "prep" / "train.bin").write_bytes(b"\0" * 100)
    (repo / "autoresearch.toml").write_text(config_text())
    git(repo, "commit", "-qam", "a command that leaves its data alone")
    again = run_cli(repo, "run", "--iterations", "3", "--tag", "w")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_session_reads_shared_data_in_its_worktree(tmp_path: Path) -> None:
    repo = data_repo(tmp_path)
    result = run_cli(repo, "run", "--iterations", "3", "--tag", "ok")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "shared from your checkout (linked, watched): data/prep/*.bin" in " ".join(
        result.stdout.split())
    results = (repo / ".autoresearch" / "sessions" / "ok" / "results.tsv").read_text()
    assert "103" in results  # 100 bytes of data + X = 3: the baseline read the shared file
    assert git(repo, "status", "--porcelain") == ""  # the checkout is untouched


def test_missing_paths_are_read_from_a_failure(tmp_path: Path) -> None:
    wt = tmp_path / "wt"
    log = (f"Traceback (most recent call last):\n  File \"{wt}/train.py\", line 3\n"
           "FileNotFoundError: [Errno 2] No such file or directory: 'data/a/train.bin'\n"
           f"cat: {wt}/extra/x.txt: No such file or directory\n")
    found = missing_paths(log, wt)
    assert "data/a/train.bin" in found and "extra/x.txt" in found and "train.py" in found


def test_check_says_which_share_line_to_add(tmp_path: Path) -> None:
    repo = data_repo(tmp_path)
    text = config_text().replace('share = ["data/prep/*.bin"]\n', "")
    (repo / "autoresearch.toml").write_text(text)
    git(repo, "commit", "-qam", "no share")
    config = load(repo)
    log = "FileNotFoundError: [Errno 2] No such file or directory: 'data/prep/train.bin'\n"
    hint = suggest_share(repo, config, log, tmp_path / "wt")
    assert hint is not None and hint.line == 'share = ["data/prep/*.bin"]'
    assert hint.files == ["data/prep/train.bin", "data/prep/val.bin"]

    check = run_cli(repo, "check", env={"COLUMNS": "200"})
    assert check.returncode == 1, check.stdout + check.stderr
    assert "FileNotFoundError" in check.stdout
    assert "the command failed on data/prep/train.bin: your checkout has it, but git ignores it" in check.stdout
    assert '\n    share = ["data/prep/*.bin"]\n' in check.stdout
    # Added as told, the dry run passes.
    (repo / "autoresearch.toml").write_text(text.replace(
        "budget_seconds = 5\n", 'budget_seconds = 5\nshare = ["data/prep/*.bin"]\n'))
    git(repo, "commit", "-qam", "share the data")
    again = run_cli(repo, "check")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 shared file(s) linked from your checkout" in again.stdout


def test_an_untracked_file_git_does_not_ignore_is_named_with_what_to_do(tmp_path: Path) -> None:
    repo = data_repo(tmp_path)
    (repo / "notes.txt").write_text("local notes\n")
    log = "FileNotFoundError: [Errno 2] No such file or directory: 'notes.txt'\n"
    hint = suggest_share(repo, load(repo), log, tmp_path / "wt")
    assert hint is not None and not hint.ignored
    assert hint.line == 'share = ["data/prep/*.bin", "notes.txt"]'  # kept beside the existing


def test_check_says_to_commit_an_evaluation_script_left_uncommitted(tmp_path: Path) -> None:
    # The first thing a new user trips on: score.py written but not committed. check showed
    # Python's "can't open file '…/wt/score.py'" alone: the apostrophe of "can't" was read as
    # the quote opening a path, so the file was never named, nor what to do.
    repo = make_repo(tmp_path / "repo", {"target.py": "X = 3.0  # knob: float(0, 10)\n",
                                         "autoresearch.toml": CONFIG})
    (repo / "score.py").write_text(SCORE_PY)
    assert missing_paths("python: can't open file '/w/wt/score.py': [Errno 2] No such file",
                         Path("/w/wt")) == ["score.py"]
    check = run_cli(repo, "check")
    said = " ".join(check.stdout.split())
    assert check.returncode == 1, said
    assert ("the command failed on score.py: your checkout has it, but it is not committed, and "
            "experiments run in worktrees made from the commit. Commit it: git add score.py && "
            "git commit") in said, said
    git(repo, "add", "score.py")
    git(repo, "commit", "-qm", "the evaluation")
    assert run_cli(repo, "check").returncode == 0
