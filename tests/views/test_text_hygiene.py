"""Proposer text at the ledger's boundary, "Trojan Source" in diffs, and huge hypotheses in the
terminal: a real session (the scripted proposer, `autoresearch run`) and the views of it.

- Free text a proposer supplies is cleaned where it enters the ledger: the SQLite file itself,
  `results --json` and results.tsv hold no escape sequence, C0 (but tab and newline), DEL or C1
  control, and a bidirectional control is stored as its visible marker ⟨U+202E⟩. Rows an older
  autoresearch stored unclean come out of the ledger clean.
- A repository file holding bidirectional overrides shows them, in every diff view, as markers
  with a warning, and the line reads in its logical order (checked in headless Chromium, whose
  layout would put an overridden run right to left).
- A 1 MB hypothesis is shown bounded (its head, then "… N more characters: `autoresearch show ID
  --full`") by `run`, `status`, `results`, `show` and the live panel; `show ID --full` prints it
  whole; a hypothesis of normal size is never cut.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import pytest

from autoresearch.display import RichDisplay
from autoresearch.ledger.reviews import ReviewFindingRecord, ReviewRecord
from autoresearch.views.safe_console import SafeConsole
from tests.views.conftest import autoresearch, init_repo, serve
from tests.views.ledger_factory import build_session
from tests.views.test_dashboard_browser import (  # (page and browser: fixtures of conftest)
    CHROMIUM,
    shows_experiments,
    wait_until,
)

# What no stored or shown text may hold: C0 controls but tab and newline, DEL, C1, and the raw
# bidirectional controls (their markers are fine).
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
RLO = "\u27e8U+202E\u27e9"  # the marker of RIGHT-TO-LEFT OVERRIDE
# A line that reads `"abcXYZ"` while the string holds `abcZYX`: the override reverses ZYX.
TROJAN = 'ACCESS = "abc\u202eZYX\u202c"  # trojan\n'
SCORE = textwrap.dedent("""
    import target
    print("score:", (target.X - 7) ** 2)
    """)
CONFIG = textwrap.dedent("""
    scope = ["target.py"]
    protected = ["score.py"]
    [verify]
    command = "{python} score.py"
    budget_seconds = 5
    timeout_seconds = 20
    [metric]
    name = "score"
    direction = "minimize"
    [decision]
    repeats = 1
    deterministic = true
    headline_pairs = 0
    [proposer]
    name = "tests.support.scripted_proposer:ScriptedProposer"
    script = "SCRIPT"
    """)
# Every kind of control a model's text can carry, with the tab and newlines it may mean.
HOSTILE = ("nel\x85 csi\x9b31m c1-osc\x9d0;c1-title\x9c esc\x1b[2J bell\x07 "
           "\u202egnp.exe\u202c lrm\u200e tab\there\r\nline two")
RATIONALE = "why:\x9b2J because\x85\tindented\nsecond \u2066isolate\u2069"
HUGE = "huge " + "A" * 1_000_000  # 1 MB, one word
# Of normal size: thirty lines, about 1,800 characters, shown whole everywhere.
NORMAL = "\n".join(f"line {i:02d} of a long but normal hypothesis, said in full" for i in range(30))
SCRIPT = [
    {"hypothesis": HOSTILE, "rationale": RATIONALE,
     "edits": {"target.py": "X = 4.0\n" + TROJAN}},
    {"hypothesis": HUGE, "edits": {"target.py": "X = 4.5\n" + TROJAN}},
    {"hypothesis": NORMAL, "edits": {"target.py": "X = 5.0\n" + TROJAN}},
    {"error": "the model said \x9b2J\x85 \u202eevil\u202c \x1b]0;t\x07done"},
]


def _run(base: Path, script_items: list[dict[str, Any]]) -> tuple[Path, str]:
    script = base / "script.json"
    script.write_text(json.dumps(script_items))
    repo = base / "repo"
    init_repo(repo, {"target.py": "X = 3.0\n" + TROJAN, "score.py": SCORE,
                     "autoresearch.toml": CONFIG.replace("SCRIPT", str(script))})
    proc = autoresearch(repo, "run", "--iterations", str(len(script_items) + 1), "--tag", "t")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return repo, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The finished session, and what `run` printed."""
    return _run(tmp_path_factory.mktemp("hygiene"), SCRIPT)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's first experiment only: a browser lays a 1 MB word out slowly."""
    return _run(tmp_path_factory.mktemp("trojan"), SCRIPT[:1])[0]


def _clean(text: str, what: str) -> None:
    found = CONTROL.search(text)
    assert found is None, (f"{what} holds {found.group()!r}: "
                           f"{text[max(0, found.start() - 60):found.end() + 60]!r}")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


# --- 1. proposer text is clean in the ledger ----------------------------------------------------


def test_the_ledger_file_holds_proposer_text_clean(session: tuple[Path, str]) -> None:
    """Read the SQLite file directly, as another tool would: no control character, the tab and
    newlines kept, the words around the sequences kept, the override as its marker."""
    repo, _ = session
    db = sqlite3.connect(repo / ".autoresearch/ledger.db")
    rows = {r[0]: r[1:] for r in db.execute(
        "SELECT id, hypothesis, rationale, decision_reason FROM experiments")}
    messages = [r[0] for r in db.execute("SELECT message FROM events")]
    db.close()
    for exp_id, texts in rows.items():
        for text in texts:
            _clean(text, exp_id)
    for message in messages:
        _clean(message, "an event")
    hypothesis, rationale, _ = rows["t-0002"]
    assert hypothesis == ("nel csi c1-osc esc bell " + RLO + "gnp.exe\u27e8U+202C\u27e9 "
                          "lrm\u27e8U+200E\u27e9 tab\there\nline two")
    assert rationale == "why: because\tindented\nsecond \u27e8U+2066\u27e9isolate\u27e8U+2069\u27e9"
    assert rows["t-0005"][2].startswith("proposal failed: the model said ")
    assert RLO + "evil" in rows["t-0005"][2] and "done" in rows["t-0005"][2]


def test_exports_hold_proposer_text_clean(session: tuple[Path, str]) -> None:
    repo, _ = session
    proc = autoresearch(repo, "results", "--json", "--tag", "t")
    assert proc.returncode == 0, proc.stderr
    for text in _strings(json.loads(proc.stdout)):
        _clean(text, "results --json")
    tsv = (repo / ".autoresearch/sessions/t/results.tsv").read_text()
    _clean(tsv.replace("\t", " "), "results.tsv")
    assert RLO + "gnp.exe" in tsv


def test_run_prints_proposer_text_clean_with_its_words(session: tuple[Path, str]) -> None:
    """`run` prints what it records: no control, the override as its marker, and the words
    after a sequence kept (rich drops an OSC's BEL, so cleaning after it took `done` along)."""
    _, out = session
    _clean(out, "run")
    flat = " ".join(out.split())
    assert f"the model said {RLO}evil\u27e8U+202C\u27e9 done" in flat
    assert f"bell {RLO}gnp.exe" in flat


def _hostile_review(exp_id: str, session_id: int) -> ReviewRecord:
    finding = ReviewFindingRecord(
        colour="red", path="target.py", start_line=1, end_line=2, angle="logic\x9b",
        category="logic", severity="high", title="title \x1b]0;t\x07 \x85next",
        body="body\tkept\n\x9d8;;https://evil.example\x9cclick", evidence=TROJAN,
        confidence=0.9, sources=["llm\x85"], inline=True, known=False, fingerprint="f1")
    return ReviewRecord(
        subject_key="k", subject="subject \x9b2J", kind="commit", base_commit=None,
        head_commit=None, started_at=0.0, duration_s=1.0, red=1, yellow=0, purple=0,
        input_tokens=0, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0,
        cost_usd=0.0, capped=False, scale="", reviewers=[{"name": "llm", "note": "err \x85"}],
        notes=["note \x1b[31mred"], findings=[finding], session_id=session_id,
        experiment_id=exp_id)


def test_the_ledger_cleans_free_text_where_it_enters(tmp_path: Path) -> None:
    """Whatever hands text to the ledger (a proposer, the review gate, the session's reasons),
    the ledger's own write methods clean it: the file never holds a control character."""
    built = build_session(tmp_path / "repo")
    ledger = built.ledger
    exp = ledger.create_experiment(built.refresh(), hypothesis="h\x9b2J\x85 \u202ex",
                                   rationale="r\x9d0;t\x9c\tkept")
    ledger.record_proposal(exp.id, hypothesis="p\x85 \u2067y", rationale="q\x1b[1m\nnl")
    ledger.record_attempt(exp.id, attempts=2, hypothesis="a\x9b1m\u200fz")
    ledger.finish_experiment(exp.id, status="rejected", reason="model said \x9b2J\x85ok\ttab")
    ledger.add_event(built.session.id, "warning", "agent said \x1b]0;t\x07\x85 hi",
                     experiment_id=exp.id)
    ledger.add_review(_hostile_review(exp.id, built.session.id))
    ledger.close()
    db = sqlite3.connect(built.ledger.path)
    stored = [v for table, cols in (
        ("experiments", "hypothesis, rationale, decision_reason"), ("events", "message"),
        ("reviews", "subject, reviewers_json, notes_json"),
        ("review_findings", "angle, title, body, evidence, sources_json"))
        for row in db.execute(f"SELECT {cols} FROM {table}") for v in row]
    (hyp, rationale, reason), = db.execute(
        "SELECT hypothesis, rationale, decision_reason FROM experiments WHERE id = ?", (exp.id,))
    evidence, = db.execute("SELECT evidence FROM review_findings").fetchone()
    db.close()
    for text in stored:
        # The JSON columns escape controls as \\u0085: decode them to look.
        _clean(json.dumps(json.loads(text)) if text.startswith(("[", "{")) else text, "ledger")
        if text.startswith(("[", "{")):
            for s in _strings(json.loads(text)):
                _clean(s, "a JSON column")
    assert (hyp, rationale) == ("a\u27e8U+200F\u27e9z", "q\nnl")
    assert reason == "model said ok\ttab"
    assert evidence == TROJAN.replace("\u202e", RLO).replace("\u202c", "\u27e8U+202C\u27e9")


def test_rows_stored_unclean_before_come_out_clean(tmp_path: Path) -> None:
    """A ledger an older autoresearch wrote may hold C1 controls: no migration rewrites it, but
    every reader of the ledger gets the row clean (`results --json` writes it as JSON, `show`
    prints it), with its words."""
    built = build_session(tmp_path / "repo")
    exp_id = built.experiments[1].id
    built.ledger.close()
    db = sqlite3.connect(built.ledger.path)
    with db:
        db.execute("UPDATE experiments SET hypothesis = ?, decision_reason = ? WHERE id = ?",
                   ("old\x9b2J row \x85kept \u202eevil", "old reason\x9d0;t\x9c ok", exp_id))
    db.close()
    proc = autoresearch(built.repo, "results", "--json", "--tag", built.tag)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    for text in _strings(data):
        _clean(text, "results --json")
    (exp,) = [e for e in data["experiments"] if e["id"] == exp_id]
    assert exp["hypothesis"] == "old row kept " + RLO + "evil"
    assert exp["reason"] == "old reason ok"
    show = autoresearch(built.repo, "show", exp_id)
    assert show.returncode == 0, show.stderr
    assert "old row kept " + RLO + "evil" in show.stdout


# --- 2. Trojan Source in diffs ----------------------------------------------------------------


def test_show_reveals_bidi_controls_in_the_diff(session: tuple[Path, str]) -> None:
    repo, _ = session
    proc = autoresearch(repo, "show", "2", "--tag", "t")
    assert proc.returncode == 0, proc.stderr
    _clean(proc.stdout, "show")
    flat = " ".join(proc.stdout.split())
    assert f' ACCESS = "abc{RLO}ZYX\u27e8U+202C\u27e9" # trojan' in flat  # a context line
    assert f"bidirectional control characters ({RLO.replace('202E', '202C')}, {RLO})" in flat


def test_report_md_reveals_bidi_controls_in_the_diff(session: tuple[Path, str]) -> None:
    repo, _ = session
    out = repo.parent / "report-md"
    assert autoresearch(repo, "report", "--tag", "t", "--out", str(out)).returncode == 0
    md = (out / "report.md").read_text()
    _clean(md.replace("\t", " "), "report.md")
    assert f'ACCESS = "abc{RLO}ZYX' in md
    assert md.count("> ⚠ This holds bidirectional control characters") == 3  # one per kept diff


# In the browser: the text of the line that holds ZYX, and the x of each of Z, Y and X as laid
# out (an override still in the text would lay ZYX out right to left: X first).
LAYOUT = """(selector) => {
  const root = document.querySelector(selector);
  if (root === null) return null;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const at = node.data.indexOf("ZYX");
    if (at < 0) continue;
    const x = [0, 1, 2].map((i) => {
      const range = document.createRange();
      range.setStart(node, at + i);
      range.setEnd(node, at + i + 1);
      return range.getBoundingClientRect().left;
    });
    return { line: node.parentElement.closest("pre > span").textContent, x };
  }
  return null;
}"""


def _reads_in_order(page: Any, root: str, what: str) -> None:  # noqa: F811
    found = page.evaluate(LAYOUT, root)
    assert found is not None, f"no ZYX in {what}"
    x = found["x"]
    assert x[0] < x[1] < x[2], f"{what} lays ZYX out reversed: {x}"
    assert f'ACCESS = "abc{RLO}ZYX\u27e8U+202C\u27e9"' in found["line"], found
    assert "\u202e" not in found["line"]


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                    "/usr/bin/chromium (apt-get install -y chromium)")
def test_html_views_show_bidi_markers_in_reading_order(small: Path,
                                                       page: Any) -> None:  # noqa: F811
    """report.html and the dashboard's drawer, in Chromium: the context line shows the markers,
    reads in its logical order, and a warning sits above the diff."""
    repo = small
    out = repo.parent / "report-html"
    assert autoresearch(repo, "report", "--tag", "t", "--out", str(out)).returncode == 0
    page.goto((out / "report.html").as_uri())
    _reads_in_order(page, "pre", "report.html")
    assert "bidirectional control characters" in page.locator(".bidi-warning").first.inner_text()
    with serve(repo, "t") as url:
        page.goto(url + "/")
        shows_experiments(page, 2)
        page.click("#experiments tbody tr[data-id='t-0002']")
        wait_until(page, "document.getElementById('detail-id').textContent === 't-0002'"
                   " && document.querySelector('#detail pre.diff') !== null")
        _reads_in_order(page, "#detail pre.diff", "the dashboard")
        warning = page.locator("#detail .bidi-warning").inner_text()
        assert "bidirectional control characters" in warning and RLO in warning
        marks = page.locator("#detail pre.diff span.bidi").all_inner_texts()
        assert RLO in marks and all(re.fullmatch(r"\u27e8U\+[0-9A-F]{4}\u27e9", m) for m in marks)
    assert page.errors == []


# --- 3. a huge hypothesis in the terminal ------------------------------------------------------

MORE = re.compile(r"… ([\d,]+) more characters(?: \(([\d,]+) more lines\))?: "
                  r"`autoresearch show (t-\d{4}) --full`")


def _bounded_huge(out: str, what: str) -> None:
    found = MORE.search(" ".join(out.split()))
    assert found is not None, f"{what} does not say the hypothesis was cut: {out[-2000:]!r}"
    assert found.group(3) == "t-0003"
    assert out.count("A") < 10_000, f"{what} printed {out.count('A')} characters of it"


@pytest.mark.parametrize("command", [("status",), ("results",), ("show", "3")])
def test_a_huge_hypothesis_is_shown_bounded(session: tuple[Path, str],
                                            command: tuple[str, ...]) -> None:
    repo, _ = session
    proc = autoresearch(repo, *command, "--tag", "t")
    assert proc.returncode == 0, proc.stderr
    _bounded_huge(proc.stdout, " ".join(command))
    assert "hugeAAAA" in "".join(proc.stdout.split())


def test_run_prints_a_huge_hypothesis_bounded(session: tuple[Path, str]) -> None:
    _, out = session
    _bounded_huge(out, "run")


def test_show_full_prints_a_huge_hypothesis_whole(session: tuple[Path, str]) -> None:
    repo, _ = session
    proc = autoresearch(repo, "show", "3", "--tag", "t", "--full")
    assert proc.returncode == 0, proc.stderr
    assert "".join(proc.stdout.split()).count("A" * 1_000_000) == 1
    assert MORE.search(" ".join(proc.stdout.split())) is None
    # The diff's copy of it (the commit's message) stays cut: the hypothesis is right above.
    assert "more characters of the message" in proc.stdout


@pytest.mark.parametrize("command", [("status",), ("results",), ("show", "4")])
def test_a_hypothesis_of_normal_size_is_never_cut(session: tuple[Path, str],
                                                  command: tuple[str, ...]) -> None:
    repo, session_out = session
    proc = autoresearch(repo, *command, "--tag", "t")
    assert proc.returncode == 0, proc.stderr
    for out in (proc.stdout, session_out):
        flat = " ".join(out.split())
        for i in range(30):
            assert f"line {i:02d} of a long but normal hypothesis, said in full" in flat
        assert "t-0004 --full" not in flat


def test_the_live_panel_shows_a_huge_hypothesis_bounded() -> None:
    buffer = io.StringIO()
    console = SafeConsole(file=buffer, force_terminal=True, width=120, color_system=None)
    display = RichDisplay(console)
    display.experiment_started("t-0003", HUGE)
    console.print(display)
    out = buffer.getvalue()
    assert out.count("A") < 1000 and "hugeAAAA" in "".join(out.replace("│", " ").split())
    assert "autoresearch show t-0003 --full" in " ".join(out.replace("│", " ").split())
