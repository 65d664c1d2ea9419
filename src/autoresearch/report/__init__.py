"""`autoresearch report`: progress.png, a self-contained report.html and report.md for a session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autoresearch.report.content import ReportData, collect
from autoresearch.report.html import render_html
from autoresearch.report.markdown import render_markdown
from autoresearch.report.plot import progress_png_bytes
from autoresearch.report.writing import (
    HTML_NAME,
    MD_NAME,
    PNG_NAME,
    ReportError,
    refuse_to_overwrite,
    write_atomically,
)
from autoresearch.state import StatePaths
from autoresearch.views.format import fmt_experiments
from autoresearch.views.summary import SessionSummary, open_ledger, resolve_session

__all__ = ["ReportData", "ReportError", "ReportFiles", "check_out_dir", "collect",
           "progress_title", "report_dir", "write_report"]


@dataclass(frozen=True)
class ReportFiles:
    png: Path
    html: Path
    markdown: Path
    data: ReportData


def report_dir(repo: Path, tag: str) -> Path:
    """Where report writes when it is given no --out: the session's own, git-ignored state."""
    return StatePaths(repo, tag).session_dir / "report"


def _out(repo: Path, tag: str, out_dir: Path | None, force: bool) -> Path:
    """The directory to write to, refused (ReportError) when a file report would write there is
    not one report wrote, unless `force`. The default directory is report's own: rewritten."""
    default = report_dir(repo, tag)
    if out_dir is None or out_dir.resolve() == default.resolve():
        return default
    refuse_to_overwrite(out_dir, force)
    return out_dir


def check_out_dir(repo: Path, tag: str | None, out_dir: Path | None = None, *,
                  force: bool = False) -> Path:
    """What `write_report` refuses, said before anything else is done (`report --verify`
    re-measures first, which takes a while and should not end in a refusal)."""
    ledger = open_ledger(repo)
    try:
        session = resolve_session(ledger, tag)
    finally:
        ledger.close()
    return _out(repo, session.tag, out_dir, force)


def progress_title(s: SessionSummary) -> str:
    """progress.png's title: the count `status` gives ("1 experiment (1 failed baseline
    attempt)", "12 experiments (the baseline + 11 candidates)"), then the keeps."""
    return f"autoresearch · {s.tag} · {fmt_experiments(s.counts)}, {s.counts['keep']} kept"


def write_report(repo: Path, tag: str | None, out_dir: Path | None = None, *,
                 force: bool = False) -> ReportFiles:
    """Write the three files for the session `tag` (default: the latest) into `out_dir`.

    The default directory is the session's own state directory, which is git-ignored, so a
    report never dirties the user's checkout unless they ask for another place. Elsewhere, a
    file of the same name that report did not write is never overwritten unless `force`: the
    whole set is refused before any file is written (report.writing). Each file is replaced
    whole (a temporary file, then a rename), never left half written.
    """
    ledger = open_ledger(repo)
    try:
        session = resolve_session(ledger, tag)
        data = collect(repo, ledger, session)
    finally:
        ledger.close()
    png = progress_png_bytes(data.view.chart, progress_title(data.view.summary))
    html = render_html(data, png).encode("utf-8")
    md = render_markdown(data, PNG_NAME).encode("utf-8")
    out = _out(repo, session.tag, out_dir, force)  # the moment before the first write
    out.mkdir(parents=True, exist_ok=True)
    for name, content in ((PNG_NAME, png), (HTML_NAME, html), (MD_NAME, md)):
        write_atomically(out / name, content)
    return ReportFiles(out / PNG_NAME, out / HTML_NAME, out / MD_NAME, data)
