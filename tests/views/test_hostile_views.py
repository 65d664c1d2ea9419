"""Hostile text in every view: a real session whose hypotheses, failure message, file names,
verify log and metric name are written to attack what shows them.

The text comes in the ways it does in practice: a proposer's hypothesis and error (the scripted
proposer), file names it creates, the verify command's own output, and the metric's name in the
config (printed by the command as a JSON key). Each view must show it as text:
- the terminal (`run`, `status`, `results`, `show`, `report`'s summary): no escape sequence or
  control character reaches it (`ESC ] 0 ;` retitles the window, `ESC [ 2 J` clears it, OSC 8
  hides a link, U+009B is CSI on terminals that honour C1), and rich markup in the text is
  printed, not obeyed (`[link=…]` would become a hyperlink, a stray `[/]` an error);
- results.tsv keeps its nine columns whatever tabs and newlines the text holds;
- report.md escapes inline HTML, links, backticks and pipes; report.html escapes HTML;
  progress.png draws `$…$` as written (matplotlib would parse it as mathtext, and fail).
A hypothesis over 128 KiB is committed (through stdin: as one argument it would exceed the
kernel's limit and stop the session).
"""

from __future__ import annotations

import io
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from autoresearch.display import RichDisplay
from autoresearch.report.reviews import _finding_md
from autoresearch.views.review import FindingView
from autoresearch.views.safe_console import SafeConsole
from tests.views.conftest import autoresearch, init_repo, serve
from tests.views.test_dashboard_browser import (  # (page and browser: fixtures of conftest)
    CHROMIUM,
    shows_experiments,
    wait_until,
)

# The metric's name: markup that would close a tag that is not open, HTML, a pipe, a backtick,
# quotes and mathtext that matplotlib cannot parse (`$\bar$`) in one.
METRIC = "acc[/]<img src=x onerror=alert(1)>|m`e\"t'ric$\\bar$"
# Every kind of terminal control a log can carry, HTML, and rich markup.
LOG = ("\x1b]0;PWNED-TITLE\x07\x1b[2J\x1b[31mred\x1b[0m \x1b]8;;https://evil.example\x1b\\click"
       "\x1b]8;;\x1b\\ <script>alert('log')</script></textarea> [bold red]log markup[/] "
       "\u202eevil\u202c\nvisible line\roverwritten\nc1 csi \x9b2J c1 osc \x9d0;c1-title\x9c end\n")
SCORE = textwrap.dedent(f"""
    import json, sys
    import target
    sys.stdout.write({LOG!r})
    if getattr(target, "CRASH", False):
        sys.exit(3)
    print(json.dumps({{{METRIC!r}: (target.X - 7) ** 2}}))
    """)
CONFIG = textwrap.dedent(f"""
    scope = ["target.py", "x/*"]
    protected = ["score.py"]
    [verify]
    command = "{{python}} score.py"
    budget_seconds = 5
    timeout_seconds = 20
    [metric]
    name = {json.dumps(METRIC)}
    format = "json"
    direction = "minimize"
    [decision]
    repeats = 1
    deterministic = true
    headline_pairs = 0
    [proposer]
    name = "tests.support.scripted_proposer:ScriptedProposer"
    script = "SCRIPT"
    """)
HYPOTHESIS = ("<script>alert(1)</script> <img src=x onerror=alert(2)> </textarea> "
              "<a href=\"javascript:alert(3)\">j</a> \"' [bold red]RED[/] "
              "[link=https://evil.example]click[/link] [x](javascript:alert(4)) `tick` | pipe | "
              "$x^2$ costs $5 \x1b]0;pwned\x07 \x1b[2J \x9b2J \x9d0;c1title\x9c \u202egnp.exe\u202c "
              "tab\there\nsecond line\rCR")
HUGE = "huge " + "A" * 300_000  # over MAX_ARG_STRLEN (128 KiB) as one argument
SCRIPT = [
    {"hypothesis": HYPOTHESIS, "edits": {"target.py": "X = 4.0\n# </pre><script>d()</script>\n"}},
    {"hypothesis": HUGE, "edits": {"target.py": "X = 4.5\n"}},
    {"hypothesis": "file names [red]x[/] <img src=x onerror=alert(5)>",
     "edits": {"x/<img src=x onerror=alert(5)>[red].py": "Y = 1\n", "x/a|b\"c.py": "Z = 1\n"}},
    {"error": "the model said \x1b]0;err\x07\x1b[2J [bold]x[/] <script>e()</script>\ttab\nnl"},
    {"hypothesis": "crash it [red]x[/]", "edits": {"target.py": "CRASH = True\nX = 1\n"}},
    # Kept, so progress.png labels it: mathtext matplotlib cannot parse.
    {"hypothesis": "a better one $\\foo{$", "edits": {"target.py": "X = 6.0\n"}},
]
# What no terminal view may print: C0 controls but newline (and tab), DEL, C1, bidi controls.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The finished session, and what `run` printed."""
    base = tmp_path_factory.mktemp("hostile")
    script = base / "script.json"
    script.write_text(json.dumps(SCRIPT))
    repo = base / "repo"
    init_repo(repo, {"target.py": "X = 3.0\n", "score.py": SCORE,
                     "autoresearch.toml": CONFIG.replace("SCRIPT", str(script))})
    proc = autoresearch(repo, "run", "--iterations", str(len(SCRIPT) + 1), "--tag", "h")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return repo, proc.stdout + proc.stderr


def _no_control(text: str, what: str) -> None:
    found = CONTROL.search(text)
    assert found is None, (f"{what} printed {found.group()!r}: "
                           f"{text[max(0, found.start() - 80):found.end() + 80]!r}")


def test_run_prints_hostile_text_as_text(hostile: tuple[Path, str]) -> None:
    _, out = hostile
    _no_control(out, "run")
    flat = " ".join(out.split())
    assert "[bold red]RED[/] [link=https://evil.example]click[/link]" in flat  # markup as text
    assert "the model said" in flat and "[bold]x[/]" in flat
    assert "huge AAAA" in flat  # the 300 KB hypothesis was committed and run
    # A hypothesis's own lines are indented: none passes for another experiment's line.
    assert all(not line.startswith(("second line", "nl")) for line in out.splitlines())


@pytest.mark.parametrize(("command", "literal"), [
    (("status",), "acc[/]<img"), (("results",), "acc[/]<img"), (("show", "2"), "acc[/]<img"),
    (("show", "4"), "acc[/]<img"), (("show", "5"), "said[bold]x[/]"),
    (("show", "6"), "crashit[red]x[/]"), (("report",), "acc[/]<img"), (("check",), "acc[/]<img")])
def test_terminal_views_print_hostile_text_as_text(hostile: tuple[Path, str],
                                                   command: tuple[str, ...], literal: str) -> None:
    repo, _ = hostile
    proc = autoresearch(repo, *command, *(("--tag", "h") if command != ("check",) else ()))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _no_control(proc.stdout + proc.stderr, " ".join(command))
    # rich markup in names and prose is printed, not obeyed (nor an error: `[/]` closes
    # nothing).
    assert literal in "".join(proc.stdout.split())


def test_show_prints_the_log_tail_and_the_names_as_text(hostile: tuple[Path, str]) -> None:
    repo, _ = hostile
    log = autoresearch(repo, "show", "2", "--tag", "h").stdout
    flat = " ".join(log.split())
    # The sequences are gone whole (no `]0;PWNED-TITLE` residue); the words are kept.
    assert "PWNED-TITLE" not in log and "c1-title" not in log
    assert "red click" in flat and "[bold red]log markup[/]" in flat and "c1 csi" in flat
    assert "[link=https://evil.example]click[/link]" in flat
    names = "".join(autoresearch(repo, "show", "4", "--tag", "h").stdout.split())
    assert "x/<imgsrc=xonerror=alert(5)>[red].py" in names


def test_check_prints_a_failed_runs_log_as_text(tmp_path: Path) -> None:
    """`check`'s dry run that fails shows the command's output: as text."""
    repo = tmp_path / "repo"
    init_repo(repo, {"target.py": "X = 3.0\nCRASH = True\n", "score.py": SCORE,
                     "autoresearch.toml": CONFIG.split("[proposer]")[0]})
    proc = autoresearch(repo, "check")
    assert proc.returncode != 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _no_control(proc.stdout + proc.stderr, "check")
    flat = " ".join(proc.stdout.split())
    assert "exit code 3" in flat and "red click" in flat and "[bold red]log markup[/]" in flat


def test_results_tsv_keeps_its_columns(hostile: tuple[Path, str]) -> None:
    repo, _ = hostile
    lines = (repo / ".autoresearch/sessions/h/results.tsv").read_text().split("\n")[:-1]
    assert len(lines) == len(SCRIPT) + 2  # the header, the baseline, one per item
    assert [len(line.split("\t")) for line in lines] == [9] * len(lines)
    _no_control(" ".join(lines).replace("\t", " "), "results.tsv")
    assert lines[0].split("\t")[1] == METRIC
    rows = {line.split("\t")[-1]: line.split("\t") for line in lines[1:]}
    shown = rows["h-0002"][4]  # as recorded (clean_prose dropped the C0 controls), on one line
    assert shown.startswith("<script>alert(1)</script>") and shown.endswith("here second lineCR")
    assert rows["h-0005"][4].startswith("proposal failed: the model said [bold]x[/]")


def _outside_code(markdown: str) -> str:
    """report.md without its fenced diffs and code spans: the parts Markdown interprets."""
    text = re.sub(r"(?ms)^(`{3,})diff$.*?^\1$", "", markdown)
    return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", text)


def test_report_md_shows_hostile_text_as_text(hostile: tuple[Path, str]) -> None:
    repo, _ = hostile
    out = repo.parent / "report"
    assert autoresearch(repo, "report", "--tag", "h", "--out", str(out)).returncode == 0
    md = (out / "report.md").read_text()
    _no_control(md.replace("\t", " "), "report.md")
    prose = _outside_code(md)
    # No raw HTML, link or code span from the text: each special character is escaped.
    assert not re.search(r"(?<!\\)<(?:script|img|a |/textarea)", prose)
    assert not re.search(r"(?<!\\)\]\(javascript:", prose)
    assert "\\<script\\>alert(1)\\</script\\>" in md
    assert "\\[x\\](javascript:alert(4))" in md and "\\`tick\\`" in md
    # The experiments table keeps its columns: every row has its nine cells.
    rows = [line for line in md.splitlines() if line.startswith("| h-")]
    assert len(rows) == len(SCRIPT) + 1
    assert all(len(re.findall(r"(?<!\\)\|", row)) == 10 for row in rows), rows
    # The metric's name is inline code whose fence its own backtick cannot close.
    assert f"metric ``{' '.join(METRIC.split())}`` (minimize)" in md


def test_report_html_escapes_hostile_text(hostile: tuple[Path, str]) -> None:
    repo, _ = hostile
    out = repo.parent / "report-html"
    assert autoresearch(repo, "report", "--tag", "h", "--out", str(out)).returncode == 0
    html = (out / "report.html").read_text()
    assert not re.search(r"<(?:script|img src=x|a |/textarea|/pre><script)", html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # the metric's name


def test_the_live_panel_shows_hostile_text_as_text() -> None:
    """`run`'s live panel on a terminal (a pipe gets plain lines, tested above): the hypothesis
    and the metric's name are text, not markup, and no escape sequence from them reaches it."""
    buffer = io.StringIO()
    console = SafeConsole(file=buffer, force_terminal=True, width=200, color_system="standard")
    display = RichDisplay(console)
    display.tally.metric, display.tally.baseline, display.tally.best = METRIC, 2.0, 1.0
    display.experiment_started("h-0002", HYPOTHESIS)
    display.run_started("c[/]", 5.0, slot="s1")
    console.print(display)  # what Live draws, four times a second
    out = buffer.getvalue()
    assert "\x1b]" not in out and "\x9b" not in out and "\x9d" not in out  # no OSC 8 link, C1
    assert "\u202e" not in out
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)  # rich's own colours are fine
    assert "[link=https://evil.example]click[/link]" in plain and "acc[/]<img" in plain
    assert "s1 c[/]" in plain


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                    "/usr/bin/chromium (apt-get install -y chromium)")
def test_the_dashboard_shows_hostile_text_as_text(hostile: tuple[Path, str],
                                                  page: Any) -> None:  # noqa: F811
    """In a real browser: the table, the chart, the session list and each experiment's drawer
    (hypothesis, decision, files, diff, log tail, runs' metrics) put the text in as text. No
    payload runs (no dialog opens, no element it names is created) and the text reads as
    written."""
    repo, _ = hostile
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    with serve(repo, "h") as url:
        page.goto(url + "/")
        shows_experiments(page, len(SCRIPT) + 1)
        cell = page.locator("#experiments tbody tr[data-id='h-0002'] td.hyp").inner_text()
        assert cell.startswith("<script>alert(1)</script> <img src=x onerror=alert(2)>")
        for exp_id in ("h-0002", "h-0004", "h-0005"):
            page.click(f"#experiments tbody tr[data-id='{exp_id}']")
            wait_until(page, f"document.getElementById('detail-id').textContent === '{exp_id}'"
                       " && document.querySelector('#detail-body h4') !== null")
            body = page.locator("#detail").inner_text()
            if exp_id == "h-0002":
                log = page.locator("#detail pre.log").inner_text()
                assert "<script>alert('log')</script></textarea>" in log
                # Escape sequences and bidi overrides are no text: gone from the log tail.
                assert "red click" in log and "PWNED" not in log and "[31m" not in log
                assert "\u202e" not in log and "\x1b" not in log
                assert "+# </pre><script>d()</script>" in body  # the diff
                assert "acc[/]<img src=x onerror=alert(1)>" in body  # a run's metric
            if exp_id == "h-0004":
                assert "x/<img src=x onerror=alert(5)>[red].py" in body  # the files
            if exp_id == "h-0005":
                assert "<script>e()</script>" in body  # the failure's reason
            page.keyboard.press("Escape")
        injected = page.evaluate("""() => ({
            imgs: document.querySelectorAll('img').length,
            scripts: document.querySelectorAll('script').length,
            links: document.querySelectorAll('a[href^="javascript:" i]').length,
            textareas: document.querySelectorAll('textarea').length})""")
    assert injected == {"imgs": 0, "scripts": 3, "links": 0, "textareas": 0}
    assert dialogs == [] and page.errors == []


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                    "/usr/bin/chromium (apt-get install -y chromium)")
def test_a_huge_hypothesis_does_not_widen_the_pages(hostile: tuple[Path, str],
                                                    page: Any) -> None:  # noqa: F811
    """A 300 KB hypothesis without a space (h-0003) wraps in the dashboard's table and drawer
    and in report.html, instead of making them millions of pixels wide."""
    repo, _ = hostile
    width = page.viewport_size["width"]
    with serve(repo, "h") as url:
        page.goto(url + "/")
        shows_experiments(page, len(SCRIPT) + 1)
        table = page.evaluate("[document.querySelector('#experiments').scrollWidth, "
                              "document.querySelector('#experiments').parentElement.clientWidth]")
        assert table[0] <= table[1], table
        page.click("#experiments tbody tr[data-id='h-0003']")
        wait_until(page, "document.getElementById('detail-id').textContent === 'h-0003'"
                   " && document.querySelector('#detail-body h4') !== null")
        drawer = page.evaluate("[document.getElementById('detail').scrollWidth, "
                               "document.getElementById('detail').clientWidth]")
        assert drawer[0] <= drawer[1], drawer
        # Left while the server stops, the live page would try to reach it again (a refused
        # connection in the console is the page working, not an error of this test's).
        page.goto("about:blank")
    out = repo.parent / "report-wide"
    assert autoresearch(repo, "report", "--tag", "h", "--out", str(out)).returncode == 0
    # Bounded, with the command that prints it whole: laid out whole, the line kept Chromium
    # busy for 30 s after the page loaded (the next navigation timed out).
    assert "more characters: `autoresearch show h-0003 --full`" in (out / "report.html").read_text()
    page.goto((out / "report.html").as_uri())
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.errors == []


def test_a_review_finding_in_report_md_is_text() -> None:
    """The review gate's findings are a model's words: in report.md their title, body and place
    are text, not HTML or links (the evidence is in a fence of its own)."""
    finding = FindingView(
        colour="red", path="x/<img src=x onerror=alert(6)>.py", start_line=1, end_line=1,
        angle="logic", category="logic", severity="high",
        title="<script>alert(7)</script> [click](javascript:alert(8))",
        body="a | pipe and `tick`\n<img src=x onerror=alert(9)>", evidence="X = 1\n",
        confidence=0.9, sources=["llm"], inline=True, known=False,
        location="x/<img src=x onerror=alert(6)>.py:1", blocking=True)
    text = "\n".join(_finding_md(finding))
    prose = _outside_code(text)
    assert not re.search(r"(?<!\\)<(?:script|img)", prose), text
    assert not re.search(r"(?<!\\)\]\(javascript:", prose), text
    assert "\\<script\\>alert(7)\\</script\\>" in text and "\\`tick\\`" in text


def test_init_from_a_log_shows_its_names_as_text(tmp_path: Path) -> None:
    """`init --from-log` lists the names the log printed: `acc[/]` is a name, not markup (it
    was a MarkupError traceback)."""
    repo = tmp_path / "repo"
    init_repo(repo, {"run.log": 'step 1\n{"acc[/]": 0.5, "loss[bold]": 2.5}\n'})
    proc = autoresearch(repo, "init", "--from-log", "run.log", "--command", "python x.py",
                        "--scope", "x.py", "--metric", "acc[/]")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "objective acc[/] = 0.5" in " ".join(proc.stdout.split())
    assert 'name = "acc[/]"' in (repo / "autoresearch.toml").read_text()
