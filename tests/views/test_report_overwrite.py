"""`autoresearch report --out DIR` never overwrites a file it did not write, and writes each whole.

Through the real CLI on real git repositories: a file of report's names (progress.png,
report.html, report.md) that report did not write refuses the whole set before any file is
written (exit 1, which files, where, `--force` or another `--out`); report's own files, and its
default directory, are rewritten without a flag; an interrupted write leaves the old file.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.views.conftest import autoresearch, cli_env
from tests.views.ledger_factory import BuiltSession, git

NAMES = ("progress.png", "report.html", "report.md")
PNG_END = b"IEND\xaeB`\x82"


def snapshot(out: Path) -> dict[str, tuple[int, bytes]]:
    """Each entry of `out` (temporary files too) with its inode and bytes."""
    return {p.name: (p.lstat().st_ino, b"" if p.is_dir() or p.is_symlink() else p.read_bytes())
            for p in out.iterdir()}


def refused(proc: subprocess.CompletedProcess[str], out: Path, *names: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"refusing to overwrite {names[0]}" in proc.stderr
    for name in names:
        assert name in proc.stderr
    assert f"where: {out}" in proc.stderr
    assert "--force" in proc.stderr and "--out DIR" in proc.stderr
    assert "nothing was written" in proc.stderr


def test_report_leaves_the_users_notes_in_the_checkout_alone(demo: BuiltSession) -> None:
    """The tester's case: `report --out .` beside an untracked report.md of the user's."""
    repo = demo.repo
    demo.ledger.close()
    (repo / "report.md").write_text("my precious notes\n")
    before = snapshot(repo)

    proc = autoresearch(repo, "report", "--out", ".")
    refused(proc, repo, "report.md")
    assert proc.stdout == ""
    assert snapshot(repo) == before  # no half-written set, no temporary file left
    assert (repo / "report.md").read_text() == "my precious notes\n"

    # --force overwrites it; from then on the file is report's, rewritten without a flag.
    proc = autoresearch(repo, "report", "--out", ".", "--force")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "# autoresearch · demo" in (repo / "report.md").read_text()
    first = snapshot(repo)
    proc = autoresearch(repo, "report", "--out", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = snapshot(repo)
    assert sorted(again) == sorted(first)  # the same files: no temporary one left beside them
    for name in NAMES:
        assert again[name][0] != first[name][0]  # each replaced by a new file, whole
    assert git(repo, "status", "--porcelain").split() == [
        "??", "progress.png", "??", "report.html", "??", "report.md"]


def user_png(path: Path) -> None:
    """A chart of the user's: a PNG matplotlib drew too, but not report."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    FigureCanvasAgg(fig)
    fig.add_subplot(1, 1, 1).plot([1, 2, 3])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path.write_bytes(buf.getvalue())


def user_page(path: Path) -> None:
    path.write_text("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                    "<title>my page</title></head><body>mine</body></html>\n")


def notes_titled_like_a_report(path: Path) -> None:
    # report's title is no evidence: anyone may write it (report's marker line is what counts)
    path.write_text("# autoresearch · demo\n\nmy notes on the session\n")


def link_to_notes(path: Path) -> None:
    (path.parent.parent / "notes.md").write_text("my notes\n")
    path.symlink_to(path.parent.parent / "notes.md")


def a_directory(path: Path) -> None:
    path.mkdir()
    (path / "keep.txt").write_text("mine\n")


IN_THE_WAY: dict[str, tuple[str, Callable[[Path], None]]] = {
    "a matplotlib png": ("progress.png", user_png),
    "a web page": ("report.html", user_page),
    "notes titled like a report": ("report.md", notes_titled_like_a_report),
    "a symbolic link": ("report.md", link_to_notes),
    "a directory": ("report.html", a_directory),
}


@pytest.mark.parametrize("case", IN_THE_WAY)
def test_a_file_report_did_not_write_refuses_the_whole_set(case: str, demo_ro: BuiltSession,
                                                          tmp_path: Path) -> None:
    name, make = IN_THE_WAY[case]
    out = tmp_path / "out"
    proc = autoresearch(demo_ro.repo, "report", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # One of report's own files replaced by the user's: the other two, report's, stay as well.
    target = out / name
    if target.is_dir():
        target.rmdir()
    else:
        target.unlink()
    make(target)
    before = snapshot(out)

    proc = autoresearch(demo_ro.repo, "report", "--out", str(out))
    refused(proc, out, name)
    for other in set(NAMES) - {name}:
        assert other not in proc.stderr.splitlines()[0]  # report's own are not in the way
    assert snapshot(out) == before
    if case == "a symbolic link":
        assert (tmp_path / "notes.md").read_text() == "my notes\n"

    proc = autoresearch(demo_ro.repo, "report", "--out", str(out), "--force")
    if case == "a directory":  # --force replaces files, never a directory of the user's
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert (target / "keep.txt").read_text() == "mine\n"
        return
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert target.is_file() and not target.is_symlink()
    assert autoresearch(demo_ro.repo, "report", "--out", str(out)).returncode == 0
    if case == "a symbolic link":
        assert (tmp_path / "notes.md").read_text() == "my notes\n"  # the link replaced, not it


def test_the_default_directory_is_rewritten_freely(demo_ro: BuiltSession) -> None:
    """.autoresearch/sessions/<tag>/report is report's own (git-ignored state): whatever is in
    it is rewritten, without --force, with or without --out naming it."""
    default = demo_ro.repo / ".autoresearch" / "sessions" / demo_ro.tag / "report"
    default.mkdir(parents=True, exist_ok=True)
    (default / "report.md").write_text("scribbled over\n")
    for args in ([], ["--out", str(default)], []):
        proc = autoresearch(demo_ro.repo, "report", *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "# autoresearch · demo" in (default / "report.md").read_text()
    assert sorted(p.name for p in default.iterdir()) == sorted(NAMES)


def test_verify_is_refused_before_it_re_measures(demo_ro: BuiltSession, tmp_path: Path) -> None:
    """`report --verify` re-measures for a while first: a file in the way is said at once."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("my precious notes\n")
    proc = autoresearch(demo_ro.repo, "report", "--verify", "--out", str(out))
    refused(proc, out, "report.md")
    assert proc.stdout == ""  # nothing measured, nothing said of a headline
    assert [p.name for p in out.iterdir()] == ["report.md"]


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_an_interrupted_write_leaves_the_old_file_whole(demo_ro: BuiltSession,
                                                        tmp_path: Path) -> None:
    """A write cut short (here by a file size limit, as by a full disk) leaves the file that
    was there, never a truncated one, and no temporary file beside it."""
    import resource

    out = tmp_path / "out"
    proc = autoresearch(demo_ro.repo, "report", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    before = snapshot(out)
    png, page = (len(before[n][1]) for n in ("progress.png", "report.html"))
    assert png < page  # the page inlines the chart
    limit = (png + page) // 2  # the chart fits; the page is cut halfway through

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [sys.executable, "-m", "autoresearch", "report", "--out", str(out)],
        cwd=demo_ro.repo, env=cli_env(), capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL, preexec_fn=small_files)
    after = snapshot(out)
    assert os.stat(out / "report.html").st_size == page
    assert after["report.html"] == before["report.html"]
    assert after["report.md"] == before["report.md"]
    assert after["progress.png"][1].endswith(PNG_END)  # rewritten before the cut, whole
    assert sorted(after) == sorted(NAMES)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"cannot use {out / 'report.html'}" in proc.stderr  # the file, not its temporary
