"""`autoresearch report`: progress.png, a self-contained report.html and report.md for a session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autoresearch.report.content import ReportData, collect
from autoresearch.report.html import render_html
from autoresearch.report.markdown import render_markdown
from autoresearch.report.plot import progress_png_bytes
from autoresearch.views.summary import open_ledger, resolve_session

__all__ = ["ReportData", "ReportFiles", "collect", "write_report"]


@dataclass(frozen=True)
class ReportFiles:
    png: Path
    html: Path
    markdown: Path
    data: ReportData


def write_report(repo: Path, tag: str | None, out_dir: Path | None = None) -> ReportFiles:
    """Write the three files for the session `tag` (default: the latest) into `out_dir`.

    The default directory is the session's own state directory, which is git-ignored, so a
    report never dirties the user's checkout unless they ask for another place.
    """
    ledger = open_ledger(repo)
    try:
        session = resolve_session(ledger, tag)
        data = collect(repo, ledger, session)
    finally:
        ledger.close()
    out = out_dir if out_dir is not None else (
        repo / ".autoresearch" / "sessions" / session.tag / "report")
    out.mkdir(parents=True, exist_ok=True)
    s = data.view.summary
    title = (f"autoresearch · {s.tag} · {s.counts['total']} experiments (baseline + "
             f"{s.counts['candidates']}), {s.counts['keep']} kept")
    png = progress_png_bytes(data.view.chart, title)
    png_path = out / "progress.png"
    png_path.write_bytes(png)
    html_path = out / "report.html"
    html_path.write_text(render_html(data, png), encoding="utf-8")
    md_path = out / "report.md"
    md_path.write_text(render_markdown(data, png_path.name), encoding="utf-8")
    return ReportFiles(png_path, html_path, md_path, data)
