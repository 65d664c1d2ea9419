"""Untrusted text in `finalize` and `report` output is shown as written, never read as rich markup.

File names, commit titles, metric names and paths come from the repository and the user; a `[/]`
in any of them used to crash the command (MarkupError, after the branches were written or the
runs spent) and `[red]` silently vanished from a printed path.
"""

from __future__ import annotations

from pathlib import Path

from tests.views.conftest import autoresearch, copy_repo
from tests.views.ledger_factory import build_session, git


def _flat(text: str) -> str:
    """The output with rich's line wrapping undone, so a phrase split over lines still matches."""
    return " ".join(text.split())


def test_finalize_shows_bracketed_file_names_and_commit_titles_as_written(tmp_path: Path) -> None:
    built = build_session(tmp_path / "repo")
    repo, worktree = built.repo, built.worktree
    (worktree / "x" / "[").mkdir(parents=True)
    (worktree / "x" / "[" / "]evil.py").write_text("EVIL = 1\n")
    git(worktree, "add", "-A")
    git(worktree, "commit", "-qm", "hand fix [/] thing [red]")
    proc = autoresearch(repo, "finalize")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "MarkupError" not in proc.stderr
    out = _flat(proc.stdout)
    assert "x/[/]evil.py" in out
    assert "(hand fix [/] thing [red]) is on autoresearch/demo" in out
    assert "nothing was pushed or merged" in out  # it got to the end


def test_report_prints_bracketed_paths_as_written(tmp_path: Path) -> None:
    built = build_session(tmp_path / "br[/]x")
    out_dir = tmp_path / "out[red]dir"
    proc = autoresearch(built.repo, "report", "--out", str(out_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("wrote ")]
    assert lines == [f"wrote {out_dir / name}"
                     for name in ("progress.png", "report.html", "report.md")], proc.stdout
    assert (out_dir / "report.md").is_file()

    # The default directory inside the bracketed repository path too.
    proc = autoresearch(built.repo, "report")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"wrote {built.repo.resolve()}/.autoresearch/sessions/demo/report/report.md" in (
        proc.stdout.splitlines())


def test_finalize_verify_shows_a_bracketed_metric_name_as_written(real_repo: Path,
                                                                   tmp_path: Path) -> None:
    repo = copy_repo(real_repo, tmp_path / "copy")
    config = repo / "autoresearch.toml"
    text = config.read_text().replace('name = "score"', 'name = "s[/]core"\nformat = "regex"\n'
                                      "patterns = { \"s[/]core\" = 'score: (\\S+)' }")
    assert text != config.read_text()
    config.write_text(text)
    proc = autoresearch(repo, "finalize", "--verify", "--repeats", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    out = _flat(proc.stdout)
    assert "base: s[/]core = " in out and "each change's own effect" in out
