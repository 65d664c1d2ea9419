"""The review gate's reviews in every view: the experiment detail (the dashboard's API), the
report, `show ID`, `results` and `status`.

The reviews are real: tests/views/review_session.py runs the gate (`review_candidate`, offline
reviewers as subprocesses) on real commits and records it with `record_gate`: a planted shell
injection is blocked (red), a write to a fixed /tmp path is kept with a yellow finding, a clean
change is kept with none.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from autoresearch.config import ReviewConfig
from autoresearch.ledger import ExperimentRow
from autoresearch.report import write_report
from autoresearch.review.gate import record_gate, review_candidate
from autoresearch.views.detail import experiment_detail
from autoresearch.views.summary import open_ledger
from tests.views.conftest import cli_env, serve
from tests.views.ledger_factory import BuiltSession, Planned, build_session, git
from tests.views.review_session import (
    BLOCKED,
    KEPT_CLEAN,
    KEPT_YELLOW,
    NOT_REVIEWED,
    PLAN,
    TMP_WRITE,
    Reviewed,
)

INJECTED = 'subprocess.run(f"logger {msg}", shell=True)'
TMP_LINE = "with open('/tmp/history.txt', 'a') as fh:"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url) as resp:
        return json.loads(resp.read())


def flat(text: str) -> str:
    return " ".join(text.split())


def test_the_experiment_detail_carries_the_gate_review(reviewed_ro: Reviewed) -> None:
    ids = reviewed_ro.ids
    with serve(reviewed_ro.repo, reviewed_ro.tag) as url:
        blocked = get_json(f"{url}/api/experiment/{ids[BLOCKED]}")
        yellow = get_json(f"{url}/api/experiment/{ids[KEPT_YELLOW]}")
        clean = get_json(f"{url}/api/experiment/{ids[KEPT_CLEAN]}")
        unreviewed = get_json(f"{url}/api/experiment/{ids[NOT_REVIEWED]}")
        session = get_json(f"{url}/api/session?tag={reviewed_ro.tag}")

    assert blocked["experiment"]["status"] == "discard"
    assert blocked["experiment"]["decision_reason"].startswith("review gate (red): red train.py:11")
    (review,) = blocked["reviews"]
    assert review["blocked"] and (review["red"], review["yellow"]) == (1, 0)
    assert review["headline"] == "review: 1 red — blocked the keep"
    (finding,) = review["findings"]
    assert finding["colour"] == "red" and finding["blocking"]
    assert finding["location"] == "train.py:11" and finding["path"] == "train.py"
    assert "shell=True" in finding["title"] and "B602" in finding["body"]
    assert finding["sources"] == ["bandit B602"] and finding["angle"] == "security"
    assert finding["confidence"] >= 0.6
    # The cited line is the real line 11 of the reviewed commit.
    head = git(reviewed_ro.repo, "show", f"{blocked['experiment']['commit_sha']}:train.py")
    assert head.splitlines()[10].strip() == finding["evidence"].strip() == INJECTED
    statuses = {r["name"]: r["status"] for r in review["reviewers"]}
    assert statuses["bandit"] == statuses["ruff"] == statuses["history"] == "ok"
    assert review["failed"] == [] and review["cost_usd"] == 0
    assert review["cost_line"].startswith("reviewers: ruff, bandit, history · ")

    (kept_review,) = yellow["reviews"]
    assert not kept_review["blocked"] and kept_review["headline"] == "review: 1 yellow"
    (note,) = kept_review["findings"]
    assert (note["colour"], note["location"], note["blocking"]) == ("yellow", "data.py:6", False)
    assert note["evidence"].strip() == TMP_LINE
    assert clean["reviews"][0]["headline"] == "review: no findings"
    assert clean["reviews"][0]["findings"] == []
    assert unreviewed["reviews"] == []

    # The experiments table's rows carry the mark (the drawer has the rest).
    marks = {e["id"]: e["review"] for e in session["experiments"]}
    assert marks[ids[BLOCKED]] is not None and marks[ids[BLOCKED]]["blocked"]
    assert marks[ids[BLOCKED]]["red"] == 1
    assert marks[ids[KEPT_YELLOW]]["yellow"] == 1 and not marks[ids[KEPT_YELLOW]]["blocked"]
    assert marks[ids[NOT_REVIEWED]] is None


def test_a_yellow_gate_names_the_yellow_finding_as_the_blocker(tmp_path: Path) -> None:
    def yellow_gate(built: BuiltSession, exp: ExperimentRow, sha: str) -> str | None:
        assert exp.parent_commit is not None
        result = review_candidate(built.repo, exp.parent_commit, sha,
                                  ReviewConfig(gate="yellow"), env={})
        assert result.blocked
        record_gate(built.ledger, result, session_id=exp.session_id, experiment_id=exp.id)
        return result.reason

    built = build_session(tmp_path / "repo", tag="y", before_verdict=yellow_gate, plan=[
        Planned(KEPT_YELLOW, "discard", [9.3, 9.31], {"data.py": TMP_WRITE})])
    detail = experiment_detail(built.ledger, built.repo, built.experiments[-1].id)
    assert detail is not None
    (review,) = detail.reviews
    assert review.headline == "review: 1 yellow — blocked the keep"
    assert [(f.colour, f.blocking) for f in review.findings] == [("yellow", True)]


def test_a_review_recorded_after_the_verdict_reaches_an_open_dashboard(tmp_path: Path) -> None:
    built = build_session(tmp_path / "repo", tag="late", plan=PLAN[:2])
    exp = built.experiments[1]
    assert exp.hypothesis == BLOCKED and exp.parent_commit and exp.commit_sha
    with serve(built.repo, "late") as url:
        first = get_json(f"{url}/api/session?tag=late")
        assert all(e["review"] is None for e in first["experiments"])
        result = review_candidate(built.repo, exp.parent_commit, exp.commit_sha,
                                  ReviewConfig(gate="red"), env={})
        record_gate(built.ledger, result, session_id=exp.session_id, experiment_id=exp.id)
        # The page asks only for what changed since its last answer: the review must count.
        update = get_json(f"{url}/api/session?tag=late&since={first['stamp']}")
    changed = {e["id"]: e for e in update["experiments"]}
    assert exp.id in changed and changed[exp.id]["review"]["blocked"]


def test_the_report_lists_reviewed_keeps_and_the_blocked_ones(reviewed_ro: Reviewed,
                                                                  tmp_path: Path) -> None:
    ids = reviewed_ro.ids
    files = write_report(reviewed_ro.repo, reviewed_ro.tag, tmp_path / "out")
    md = files.markdown.read_text()
    assert ("- **Review gate:** 3 would-be keeps reviewed: 1 blocked (1 red); "
            "2 not blocked (1 yellow)") in md
    blocked = section(md, "## Blocked by the review", "\n## ")
    assert f"### {ids[BLOCKED]} · {BLOCKED}" in blocked
    assert "**review: 1 red — blocked the keep**" in blocked
    assert "Blocked by:" in blocked and "`train.py:11` subprocess call with shell=True" in blocked
    assert INJECTED in blocked and "bandit B602" in blocked
    assert ids[KEPT_YELLOW] not in blocked and ids[NOT_REVIEWED] not in blocked
    # A kept change shows its review: a yellow finding is still worth a look before merging.
    kept = section(md, "## Kept improvements, in order", "\n## Blocked")
    yellow = section(kept, f"### {ids[KEPT_YELLOW]}", "\n### ")
    assert "**review: 1 yellow**" in yellow and "`data.py:6`" in yellow and TMP_LINE in yellow
    assert "**review: no findings**" in section(kept, f"### {ids[KEPT_CLEAN]}", "\n### ")
    assert f"| {ids[BLOCKED]} | discard (blocked by review) |" in md
    assert f"| {ids[NOT_REVIEWED]} | discard |" in md

    page = files.html.read_text()
    assert "<script" not in page.lower()
    assert not re.search(r'(?:src|href)=["\']?(?:https?:)?//', page)
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    blocked_html = section(text, "Blocked by the review", "Noise floor and confidence")
    assert ids[BLOCKED] in blocked_html and "review: 1 red — blocked the keep" in blocked_html
    assert "train.py:11" in blocked_html and INJECTED in blocked_html
    kept_html = section(text, "Kept improvements, in order", "Blocked by the review")
    assert "review: 1 yellow" in kept_html and "data.py:6" in kept_html and TMP_LINE in kept_html
    assert "3 would-be keeps reviewed: 1 blocked (1 red)" in text
    # The code is escaped, never markup.
    assert 'subprocess.run(f&quot;logger {msg}&quot;, shell=True)' in page


def test_a_report_without_gate_reviews_has_no_review_section(demo_ro: BuiltSession,
                                                            tmp_path: Path) -> None:
    files = write_report(demo_ro.repo, demo_ro.tag, tmp_path / "out")
    assert "Blocked by the review" not in files.markdown.read_text()
    assert "review gate" not in files.html.read_text().lower()


def test_show_results_and_status_print_the_review(reviewed_ro: Reviewed) -> None:
    ids = reviewed_ro.ids
    shown = flat(cli(reviewed_ro.repo, "show", ids[BLOCKED]))
    assert "review: 1 red — blocked the keep" in shown
    assert "red: fix before merge (1)" in shown
    assert "train.py:11 subprocess call with shell=True" in shown
    assert "(blocked the keep)" in shown and "bandit B602 · security · injection" in shown
    assert f"11 │ {INJECTED}" in shown
    assert "reviewers: ruff, bandit, history" in shown
    # The review comes before the diff, after the decision it explains.
    assert shown.index("decision review gate (red)") < shown.index("review: 1 red") < \
        shown.index("diff --git")
    kept = flat(cli(reviewed_ro.repo, "show", ids[KEPT_YELLOW]))
    assert "review: 1 yellow" in kept and "yellow: worth a look (1)" in kept
    assert "data.py:6" in kept and "(blocked the keep)" not in kept
    assert "review:" not in cli(reviewed_ro.repo, "show", ids[NOT_REVIEWED])

    results = flat(cli(reviewed_ro.repo, "results", "--tag", reviewed_ro.tag))
    assert "review: 1 red — blocked the keep" in results and "review: 1 yellow" in results
    status = flat(cli(reviewed_ro.repo, "status", "--tag", reviewed_ro.tag))
    assert "review gate 3 would-be keeps reviewed: 1 blocked (1 red)" in status


def cli(repo: Path, *args: str) -> str:
    """The real CLI, wide enough that rich does not fold the lines under test."""
    proc = subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=repo,
                          env={**cli_env(), "COLUMNS": "200"}, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def section(text: str, start: str, end: str) -> str:
    """The text from `start` up to the next `end` after it (or the end)."""
    at = text.index(start)
    stop = text.find(end, at + len(start))
    return text[at:] if stop < 0 else text[at:stop]


def test_a_ledger_from_before_the_review_tables_still_opens_read_only(tmp_path: Path) -> None:
    """The views read reviews only where the ledger has them (a read-only opener does not
    migrate): an old ledger shows no review, and no error."""
    import sqlite3

    from autoresearch.ledger.schema import MIGRATIONS

    built = build_session(tmp_path / "repo", tag="old", plan=PLAN[1:2])
    built.ledger.close()
    path = built.repo / ".autoresearch" / "ledger.db"
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE review_findings; DROP TABLE reviews;"
                       " PRAGMA user_version = 2;")
    conn.close()
    ledger = open_ledger(built.repo)
    try:
        assert ledger.schema_version == 2 < len(MIGRATIONS)
        detail = experiment_detail(ledger, built.repo, built.experiments[-1].id)
        assert detail is not None and detail.reviews == []
        assert ledger.review_marks(built.session.id) == {}
        assert ledger.review_stamp(built.session.id) == 0
    finally:
        ledger.close()
    assert "Blocked by the review" not in write_report(
        built.repo, "old", tmp_path / "out").markdown.read_text()


def test_an_interrupted_review_is_not_shown_as_a_clean_one() -> None:
    """A review stopped before it finished is recorded for its cost with no finding: every view
    must say it was interrupted, not "no findings" (which reads as a clean change)."""
    from autoresearch.ledger.reviews import INTERRUPTED_SCALE, ReviewRow
    from autoresearch.views.review import review_view

    def row(scale: str) -> ReviewRow:
        return ReviewRow(subject_key="k", subject="HEAD", kind="range", base_commit=None,
                         head_commit=None, started_at=0.0, duration_s=1.0, red=0, yellow=0,
                         purple=0, input_tokens=1200, output_tokens=300, cache_read_tokens=0,
                         cache_write_tokens=0, cost_usd=0.01, capped=False, scale=scale,
                         reviewers=[], notes=[])

    assert review_view(row("full")).headline == "review: no findings"
    interrupted = review_view(row(INTERRUPTED_SCALE)).headline
    assert "interrupted" in interrupted and "no findings" not in interrupted


def test_show_keeps_each_line_of_a_review_whole_in_a_pipe(reviewed_ro: Reviewed) -> None:
    # Piped at 40 columns: the finding's title line, its sources and its code stay whole (a
    # padded group was cut at the console's width: "(blocke", "subprocess ca").
    proc = subprocess.run([sys.executable, "-m", "autoresearch", "show", reviewed_ro.ids[BLOCKED]],
                          cwd=reviewed_ro.repo, env={**cli_env(), "COLUMNS": "40"},
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line.strip() for line in proc.stdout.splitlines()]
    assert "train.py:11  subprocess call with shell=True identified, security issue.  (blocked " \
           "the keep)" in lines, proc.stdout
    assert any(line.startswith("bandit B602 · security · injection") and len(line) > 40
               for line in lines), proc.stdout
    assert f"11 │     {INJECTED}" in lines, proc.stdout
