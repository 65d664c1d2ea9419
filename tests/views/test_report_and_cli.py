"""`autoresearch report` on real sessions, and the CLI surface of dashboard/report/finalize."""

from __future__ import annotations

import html
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from autoresearch.report import write_report
from autoresearch.views.cli import is_loopback
from autoresearch.views.summary import build_view, open_ledger, resolve_session
from tests.views.conftest import NOISY_BASELINE, autoresearch, cli_env
from tests.views.ledger_factory import BuiltSession, build_session, git

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_of_a_real_session(multi_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = autoresearch(multi_repo, "report", "--tag", "m", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    png, html, md = out / "progress.png", out / "report.html", out / "report.md"
    assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 20_000
    page = html.read_text()
    # Self-contained: no script, nothing loaded from anywhere, the chart inlined.
    assert "<script" not in page.lower()
    assert not re.search(r'(?:src|href)=["\']?(?:https?:)?//', page)
    assert "data:image/png;base64," in page

    ledger = open_ledger(multi_repo)
    view = build_view(ledger, resolve_session(ledger, "m"))
    kept = [e for e in view.experiments if e.status == "keep" and e.kind != "baseline"]
    assert len(kept) == 4  # move A, set B, double C, A exactly 3 (see MULTI_SCRIPT)
    # Kept improvements appear in order, each with its diff; the numbers are the shared view's.
    text = md.read_text()
    positions = [text.index(f"### {e.id}") for e in kept]
    assert positions == sorted(positions)
    assert text.count("```diff") == len(kept) and "+A = 3.0" in text
    assert "![progress](progress.png)" in text
    assert view.confidence.label in page and view.confidence.label in text
    for e in kept:
        assert e.id in page
    assert "diff --git a/c.py b/c.py" in page
    assert "Noise floor" in text and "σ =" in text
    assert "python_version" in page and "python_version" in text  # the environment
    assert "$0.00" in text  # the scripted proposer's recorded cost


def test_report_shows_both_noise_floors_honestly(noisy_repo: Path, tmp_path: Path) -> None:
    files = write_report(noisy_repo, "n", tmp_path / "out")
    conf, s = files.data.view.confidence, files.data.view.summary
    own = statistics.stdev(NOISY_BASELINE)
    # The pooled σ has more degrees of freedom than the baseline's 2: the figure divides by it,
    # and both floors are named.
    assert s.noise is not None and conf.noise == pytest.approx(s.noise)
    assert abs(s.noise - own) > 0.01  # the baseline's own σ is another number
    for text in (html.unescape(files.html.read_text()), files.markdown.read_text()):
        assert (f"the pooled σ = {s.noise:.4g} over every group of repeated runs, "
                f"{conf.pooled_dof} degrees of freedom, used by both the confidence figure and "
                f"the keep/discard rule (better measured than the baseline's own σ = "
                f"{own:.4g} over its 3 runs)") in text
        assert (f"÷ σ {s.noise:.3g} (gain re-measured over 3 pairs, pooled σ, "
                f"{conf.pooled_dof} degrees of freedom)") in text


def test_png_draws_the_spread_of_repeats_over_the_markers(noisy_repo: Path) -> None:
    from matplotlib.collections import LineCollection, PathCollection

    from autoresearch.report.plot import progress_figure

    ledger = open_ledger(noisy_repo)
    chart = build_view(ledger, resolve_session(ledger, "n")).chart
    ax = progress_figure(chart).axes[0]
    markers = max(c.get_zorder() for c in ax.collections if isinstance(c, PathCollection))
    bars = [c for c in ax.collections if isinstance(c, LineCollection)]
    base = next(p for p in chart.points if p.role == "baseline")
    spans = {(round(seg[0][1], 6), round(seg[1][1], 6)): c.get_zorder()
             for c in bars for seg in c.get_segments()}
    assert spans.get((round(base.low, 6), round(base.high, 6)), 0) > markers


def test_report_default_location_keeps_the_checkout_clean(demo_ro: BuiltSession) -> None:
    files = write_report(demo_ro.repo, None)
    assert files.png.parent == demo_ro.repo / ".autoresearch" / "sessions" / "demo" / "report"
    assert git(demo_ro.repo, "status", "--porcelain") == ""
    page = files.html.read_text()
    # Crash and timeout rows, and the escaped text of every hypothesis.
    assert "switch the model to bfloat16" in page and ">timeout<" in page


def test_report_counts_agree_and_rates_are_readable(demo_ro: BuiltSession,
                                                   tmp_path: Path) -> None:
    files = write_report(demo_ro.repo, None, tmp_path / "out")
    md, page = files.markdown.read_text(), html.unescape(files.html.read_text())
    page = re.sub(r"data:image/png;base64,[^'\"]+", "", page)  # base64 has '+' in it
    # Five kept changes; the baseline is no keep, and the experiment count includes it.
    assert "11 experiments (the baseline + 10 candidates) — 5 kept, 2 discarded" in md
    assert "baseline + 10 candidates: 5 kept · 2 discarded · 1 crashed" in page
    assert "experiments / hour" in md and "experiments / hour" in page
    # The experiments ran 525 s of the ~11 min: the gaps are not counted as running.
    assert "8 min 45 s running" in md and "8 min 45 s running" in page
    assert not re.search(r"\de[+-]\d\d", md + page)  # no 5.05e+04-style numbers


def test_cli_errors_are_clear(tmp_path: Path, demo_ro: BuiltSession) -> None:
    from typer.testing import CliRunner

    from autoresearch.cli import app
    from autoresearch.errors import AutoresearchError

    plain = tmp_path / "plain"
    plain.mkdir()
    git(plain, "init", "-q")
    # The real program once: a clear message on stderr and a non-zero status, no traceback.
    proc = autoresearch(plain, "report")
    assert proc.returncode != 0
    assert "no autoresearch ledger" in proc.stderr and "Traceback" not in proc.stderr
    # The rest in-process: each command raises the error the CLI prints.
    runner = CliRunner()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    cases = [
        (["finalize", "--repo", str(plain)], "no autoresearch ledger"),
        (["dashboard", "--repo", str(plain)], "no autoresearch ledger"),
        (["report", "--repo", str(demo_ro.repo), "--tag", "nope"], "no session tagged 'nope'"),
        (["dashboard", "--repo", str(demo_ro.repo), "--host", "0.0.0.0"], "without an access token"),
        (["dashboard", "--repo", str(demo_ro.repo), "--token", "short"], "too short"),
        # A host this machine cannot listen on is said as such, not as a port in use.
        (["dashboard", "--repo", str(demo_ro.repo), "--host", "no-such-host.invalid",
          "--token", "long-enough-token"], "cannot resolve the host 'no-such-host.invalid'"),
        (["dashboard", "--repo", str(demo_ro.repo), "--host", "10.255.255.1",
          "--token", "long-enough-token"], "cannot listen on 10.255.255.1"),
        (["dashboard", "--repo", str(demo_ro.repo), "--port", str(taken.getsockname()[1])],
         "is already in use"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert isinstance(result.exception, AutoresearchError), (args, result.output)
        assert message in result.exception.render()
        if "--host" in args or "--token" in args:
            assert result.exception.exit_code == 3  # refused, as the README's exit codes say
    taken.close()
    unknown = runner.invoke(app, ["finalize", "--repo", str(demo_ro.repo), "--tag", "nope"])
    assert isinstance(unknown.exception, AutoresearchError)
    assert "known tags: demo" in unknown.exception.render()


def test_loopback_detection() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2",
                                 "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.4", "example.com", "::",
                                     "127.0.0.1.example.com"]))


@pytest.mark.parametrize(("bound", "host_header"), [
    ("127.0.0.2", "127.0.0.2:8765"),
    ("0:0:0:0:0:0:0:1", "[0:0:0:0:0:0:0:1]:8765"),
    ("[::1]", "[::1]:8765"),
])
def test_dashboard_bound_to_another_loopback_host_answers(demo_ro: BuiltSession, bound: str,
                                                          host_header: str) -> None:
    """`dashboard --host 127.0.0.2` used to start and then refuse every request with 403.

    In process (no socket on another address): the app the command serves, asked for by the
    Host header a browser sends to that address.
    """
    from starlette.testclient import TestClient

    from autoresearch.views.cli import dashboard_app

    client = TestClient(dashboard_app(demo_ro.repo, None, None, bound),
                        base_url=f"http://{host_header}")
    got = client.get("/api/session")
    assert got.status_code == 200, got.text
    assert got.json()["summary"]["tag"] == "demo" and client.get("/").status_code == 200
    # Still no DNS name: rebinding protection stays.
    assert client.get("/", headers={"host": "evil.example:8765"}).status_code == 403


@pytest.mark.slow
def test_dashboard_command_serves_and_stops(demo_ro: BuiltSession) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "dashboard", "--port", "0", "--token",
         "cli-token-0123"], cwd=demo_ro.repo, env=cli_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=cli-token-0123", line)
        assert match, line
        base = f"http://127.0.0.1:{match.group(1)}"
        assert httpx.get(base + "/api/session").status_code == 401
        got = httpx.get(base + "/api/session", headers={"Authorization": "Bearer cli-token-0123"})
        assert got.status_code == 200 and got.json()["summary"]["tag"] == "demo"
        # An open event stream must not keep Ctrl-C from stopping the server promptly.
        with httpx.stream("GET", base + "/api/stream?token=cli-token-0123", timeout=5) as s:
            next(s.iter_lines())
            proc.send_signal(signal.SIGINT)
            started = time.monotonic()
            # 130 is the conventional status of a program stopped by Ctrl-C.
            assert proc.wait(timeout=10) in (0, 130)
        assert time.monotonic() - started < 5
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_dashboard_started_before_the_first_session_waits_for_it(toy_repo: Path) -> None:
    # It refused ("no autoresearch ledger", exit 1): opening the dashboard, then starting the
    # run, is a common first step. A directory with no autoresearch.toml is still refused.
    from tests.conftest import run_cli, use_script

    use_script(toy_repo, [{"hypothesis": "X to 6", "edits": {"target.py": "X = 6.0\n"}}])
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "dashboard", "--port", "0", "--repo",
         str(toy_repo)], cwd=toy_repo, env=cli_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/: no session yet; the page shows the "
                          r"first one as soon as `autoresearch run` starts it", line)
        assert match, line + (proc.stderr.read() if proc.poll() is not None and proc.stderr
                              else "")
        base = f"http://127.0.0.1:{match.group(1)}"
        waiting = httpx.get(base + "/api/session")
        assert waiting.status_code == 404 and "run `autoresearch run`" in waiting.json()["fix"]
        assert httpx.get(base + "/").status_code == 200
        assert run_cli(toy_repo, "run", "--tag", "t", "-n", "2").returncode == 0
        shown = httpx.get(base + "/api/session")
        assert shown.status_code == 200 and shown.json()["summary"]["tag"] == "t", shown.text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def test_read_only_commands_stop_quietly_when_their_reader_goes_away(tmp_path: Path) -> None:
    """`status`, `results`, `show`, `report` and `--help` writing into a pipe whose reader left
    (`| head -1`, a pager quit): exit 141 like `cat`, nothing on stderr (it used to be exit 1
    for some, exit 0 with the output silently dropped for others); `report` has written its
    files before it prints where they are."""
    from tests.support.closed_pipe import run_into_closed_pipe, run_reading_one_line

    built = build_session(tmp_path / "repo")
    built.ledger.close()
    first = built.experiments[1].id
    for args in (["status"], ["results"], ["results", "--json"], ["show", first],
                 ["report"], ["--help"]):
        ran = run_into_closed_pipe(built.repo, *args)
        assert (ran.returncode, ran.stderr) == (141, ""), (args, ran.returncode, ran.stderr)
    assert (built.repo / ".autoresearch" / "sessions" / "demo" / "report" / "report.html").exists()
    code, line, stderr = run_reading_one_line(built.repo, "results")
    assert code in (0, 141) and stderr == "" and line  # 0: all of it fitted in the pipe
